// audit.mjs runs the graphql-http package's GraphQL over HTTP server audits
// against a running askgate and prints one line per audit:
//
//   ok   ID  NAME
//   WARN ID  NAME — REASON (HTTP status, content-type, start of the body)
//   FAIL ID  NAME — REASON (…)
//
// then "N passed, N warned, N failed". Audit names start with their level
// (MUST, SHOULD or MAY): a MUST that does not hold is a FAIL, a SHOULD or a
// MAY is a WARN. It exits 1 when any MUST failed (or an audit could not run
// at all), 0 otherwise.
//
// Usage: node audit.mjs URL [TOKEN]
//   URL    the GraphQL endpoint, e.g. http://127.0.0.1:8080/graphql
//   TOKEN  access token sent as "Authorization: Bearer TOKEN" on every
//          request; defaults to $ASKGATE_TOKEN (askgate answers 401 without)
// Environment: AUDIT_TIMEOUT_MS, the time limit of one request (10000).
import { serverAudits } from 'graphql-http';

const [url, tokenArg] = process.argv.slice(2);
const token = tokenArg || process.env.ASKGATE_TOKEN || '';
if (!url) {
	console.error('usage: node audit.mjs URL [TOKEN]   (TOKEN defaults to $ASKGATE_TOKEN)');
	process.exit(2);
}
const timeoutMs = Number(process.env.AUDIT_TIMEOUT_MS) || 10_000;

// authFetch is fetch with the bearer token on every request and a time
// limit, so that a server that never answers fails the audit instead of
// hanging the build.
function authFetch(input, init = {}) {
	const headers = new Headers(init.headers);
	if (token) headers.set('authorization', `Bearer ${token}`);
	return fetch(input, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
}

// describe summarises the response an audit failed on.
async function describe(res) {
	if (!res || typeof res.status !== 'number') return '';
	let body = '';
	try {
		body = (await res.text()).replace(/\s+/g, ' ').trim();
	} catch {
		body = '(body already read)';
	}
	if (body.length > 200) body = body.slice(0, 200) + '…';
	const type = res.headers.get('content-type') || 'no content-type';
	return ` (HTTP ${res.status}, ${type}${body ? `; ${body}` : ''})`;
}

const audits = serverAudits({ url, fetchFn: authFetch });
const results = await Promise.all(
	audits.map(async ({ id, name, fn }) => {
		try {
			return await fn();
		} catch (err) {
			// graphql-http throws only on fatal errors (the request itself
			// failed): count it as a failure whatever the level.
			return { id, name, status: 'fatal', reason: `could not run: ${err?.cause?.message || err?.message || err}` };
		}
	}),
);

let passed = 0;
let warned = 0;
let failed = 0;
for (const r of results) {
	if (r.status === 'ok') {
		passed++;
		console.log(`ok   ${r.id}  ${r.name}`);
		continue;
	}
	const fatal = r.status === 'fatal' || r.name.startsWith('MUST');
	if (fatal) failed++;
	else warned++;
	console.log(`${fatal ? 'FAIL' : 'WARN'} ${r.id}  ${r.name} — ${r.reason}${await describe(r.response)}`);
}
console.log(`${passed} passed, ${warned} warned, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
