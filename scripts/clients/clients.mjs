// clients.mjs checks askgate's subscription transports with the reference
// clients, used as a frontend uses them:
//
//   graphql-transport-ws  graphql-ws's createClient (with ws as the WebSocket)
//   graphql-sse           graphql-sse's createClient, distinct connections mode
//   legacy graphql-ws     subscriptions-transport-ws's SubscriptionClient
//
// Answers are started with a plain fetch mutation and watched through
// Subscription.answer on each transport; the error paths (unknown id,
// another user's answer, bad token, malformed and invalid documents) are
// checked through the same clients. It prints one line per check,
//
//   ok   NAME  (details)
//   FAIL NAME — REASON
//
// then "N passed, N failed", and exits 1 when any check failed. Every check
// has a time limit (CLIENTS_CHECK_TIMEOUT_MS, 15000) and the whole run one
// more (CLIENTS_TIMEOUT_MS, 55000).
//
// Usage: node clients.mjs URL
//   URL  the GraphQL endpoint, e.g. http://127.0.0.1:8080/graphql
// Environment:
//   ASKGATE_TOKEN        access token with the scopes read:chat write:chat (required)
//   ASKGATE_TOKEN_OTHER  a token of another user (optional: enables the
//                        "another user's answer is NOT_FOUND" checks)
import WebSocket from 'ws';
import { createClient as createWSClient } from 'graphql-ws';
import { createClient as createSSEClient } from 'graphql-sse';
import legacy from 'subscriptions-transport-ws';

const { SubscriptionClient } = legacy;

const [httpURL] = process.argv.slice(2);
const token = process.env.ASKGATE_TOKEN || '';
const otherToken = process.env.ASKGATE_TOKEN_OTHER || '';
if (!httpURL || !token) {
	console.error('usage: ASKGATE_TOKEN=… [ASKGATE_TOKEN_OTHER=…] node clients.mjs URL');
	process.exit(2);
}
const wsURL = httpURL.replace(/^http/, 'ws');
const checkTimeoutMs = Number(process.env.CLIENTS_CHECK_TIMEOUT_MS) || 15_000;
const runTimeoutMs = Number(process.env.CLIENTS_TIMEOUT_MS) || 55_000;
const badToken = 'Bearer not-a-valid-token';

const ANSWER = /* GraphQL */ `
	subscription Answer($id: ID!, $after: Int) {
		answer(messageId: $id, after: $after) {
			messageId
			seq
			delta
			done
			message { status content }
		}
	}
`;
const START = /* GraphQL */ `
	mutation Start($question: String!) {
		startConversation(input: { question: $question }) {
			conversation { id }
			answer { id status }
		}
	}
`;
// A document that does not parse, and one that parses but is invalid.
const MALFORMED = 'subscription { answer(messageId: "x") { seq ';
const INVALID = 'subscription { answer(messageId: "x") { seq noSuchField } }';

// ---- reporting ------------------------------------------------------------

let passed = 0;
let failed = 0;
const started = Date.now();

class CheckError extends Error {}

function assert(cond, msg) {
	if (!cond) throw new CheckError(msg);
}

function short(v, n = 300) {
	let s;
	try {
		s = typeof v === 'string' ? v : JSON.stringify(v, errorReplacer);
	} catch {
		s = String(v);
	}
	if (s === undefined) s = String(v);
	return s.length > n ? s.slice(0, n) + '…' : s;
}

function errorReplacer(_key, value) {
	if (value instanceof Error) return { name: value.name, message: value.message, ...value };
	return value;
}

// check runs fn with a time limit and prints its line. fn returns an
// optional detail for the ok line, or throws.
async function check(name, fn) {
	let timer;
	try {
		const detail = await Promise.race([
			fn(),
			new Promise((_, reject) => {
				timer = setTimeout(() => reject(new CheckError(`timed out after ${checkTimeoutMs} ms`)), checkTimeoutMs);
			}),
		]);
		passed++;
		console.log(`ok   ${name}${detail ? `  (${detail})` : ''}`);
		return true;
	} catch (err) {
		failed++;
		const reason = err instanceof CheckError ? err.message : `${err?.name || 'Error'}: ${err?.message || short(err)}`;
		console.log(`FAIL ${name} — ${reason}`);
		return false;
	} finally {
		clearTimeout(timer);
	}
}

// ---- plain HTTP -----------------------------------------------------------

async function gqlFetch(query, variables) {
	const res = await fetch(httpURL, {
		method: 'POST',
		headers: {
			'content-type': 'application/json',
			accept: 'application/graphql-response+json, application/json',
			authorization: `Bearer ${token}`,
		},
		body: JSON.stringify({ query, variables }),
		signal: AbortSignal.timeout(checkTimeoutMs),
	});
	const text = await res.text();
	let body;
	try {
		body = JSON.parse(text);
	} catch {
		throw new CheckError(`HTTP ${res.status}, not JSON: ${short(text)}`);
	}
	return { status: res.status, body };
}

let questionNo = 0;

// startAnswer starts a conversation with a question and returns the answer's
// id; it checks the answer is STREAMING.
async function startAnswer() {
	questionNo++;
	const question = `Reference client check ${questionNo} at ${new Date().toISOString()}: how do subscriptions reach a browser?`;
	const { status, body } = await gqlFetch(START, { question });
	assert(status === 200 && !body.errors, `startConversation: HTTP ${status}: ${short(body)}`);
	const answer = body.data?.startConversation?.answer;
	assert(answer?.id, `startConversation returned no answer id: ${short(body)}`);
	assert(body.data.startConversation.conversation?.id, `startConversation returned no conversation id: ${short(body)}`);
	assert(answer.status === 'STREAMING', `answer status is ${answer.status}, want STREAMING`);
	return answer.id;
}

// ---- subscribing ----------------------------------------------------------

// collect subscribes through subscribe(sink) → dispose and gathers what the
// sink is given: results (next), the error (error) and whether it completed.
// With stopAfter it disposes of the subscription after that many events,
// as a page that goes away does.
function collect(subscribe, { stopAfter = Infinity, timeoutMs = checkTimeoutMs - 1000, closes } = {}) {
	return new Promise((resolve) => {
		const out = { results: [], error: undefined, completed: false, stopped: false, timedOut: false, closes };
		let dispose = () => {};
		let settled = false;
		const finish = () => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			resolve(out);
		};
		const timer = setTimeout(() => {
			out.timedOut = true;
			try {
				dispose();
			} catch {
				/* already gone */
			}
			finish();
		}, timeoutMs);
		dispose = subscribe({
			next(result) {
				if (settled) return;
				out.results.push(result);
				if (out.results.length >= stopAfter) {
					out.stopped = true;
					// Let the client finish handling this message first.
					setImmediate(() => dispose());
					finish();
				}
			},
			error(err) {
				out.error = err;
				finish();
			},
			complete() {
				out.completed = true;
				finish();
			},
		});
	});
}

// events returns the AnswerEvents of collected results; a result with
// errors fails the check.
function events(out, what) {
	assert(!out.timedOut, `${what}: no end within the time limit after ${out.results.length} results: ${short(out.results.slice(-2))}${closesSeen(out)}`);
	assert(out.error === undefined, `${what}: error callback: ${describeError(out.error)}`);
	const evs = [];
	for (const r of out.results) {
		assert(!r.errors, `${what}: result with errors: ${short(r)}`);
		assert(r.data?.answer, `${what}: result without data.answer: ${short(r)}`);
		evs.push(r.data.answer);
	}
	return evs;
}

// checkStream checks the events of a whole answer (subscribed to with no
// after): seqs strictly increase, only the last is done, with the final
// message COMPLETE, and the deltas add up to its content. It returns the
// final content.
function checkStream(evs, id, what, { from = 0 } = {}) {
	assert(evs.length > 0, `${what}: no events`);
	let last = from;
	for (const [i, e] of evs.entries()) {
		assert(e.messageId === id, `${what}: event ${i + 1} is of message ${e.messageId}, want ${id}`);
		assert(Number.isInteger(e.seq) && e.seq > last, `${what}: seq ${e.seq} after ${last}: seqs must strictly increase${from ? ` from after=${from}` : ''}`);
		last = e.seq;
		assert(typeof e.delta === 'string', `${what}: event seq ${e.seq} has no string delta`);
		if (i < evs.length - 1) {
			assert(e.done === false, `${what}: event seq ${e.seq} is done but ${evs.length - 1 - i} more followed`);
			assert(e.message === null, `${what}: event seq ${e.seq} is not done but has a message`);
		}
	}
	const end = evs[evs.length - 1];
	assert(end.done === true, `${what}: the last event (seq ${end.seq}) is not done`);
	assert(end.message, `${what}: the done event has no message`);
	assert(end.message.status === 'COMPLETE', `${what}: final status ${end.message.status}, want COMPLETE`);
	assert(typeof end.message.content === 'string' && end.message.content.length > 0, `${what}: the final content is empty`);
	return end.message.content;
}

// closesSeen describes the close events of a graphql-ws client's sockets
// (it reconnects on its own, so a check that timed out may have seen some).
function closesSeen(out) {
	if (!out.closes?.length) return '';
	return `; socket closes: ${out.closes.map((e) => `${e.code} ${JSON.stringify(e.reason)}`).join(', ')}`;
}

function deltas(evs) {
	return evs.map((e) => e.delta).join('');
}

function firstDiff(a, b) {
	let i = 0;
	while (i < a.length && i < b.length && a[i] === b[i]) i++;
	return `differ at char ${i}: ${short(a.slice(i, i + 40))} vs ${short(b.slice(i, i + 40))} (lengths ${a.length}, ${b.length})`;
}

// checkWholeAnswer is checkStream plus the concatenation check, allowing
// for an answer that had already finished (a single final event).
function checkWholeAnswer(evs, id, what) {
	const content = checkStream(evs, id, what);
	if (evs.length > 1) {
		const text = deltas(evs);
		assert(text === content, `${what}: the deltas do not add up to message.content: ${firstDiff(text, content)}`);
	}
	return content;
}

function describeError(err) {
	if (err === undefined) return 'none';
	if (Array.isArray(err)) return `[${err.map((e) => short(e, 200)).join(', ')}]`;
	if (err && typeof err === 'object' && 'code' in err && 'reason' in err) return `close ${err.code} ${JSON.stringify(err.reason)}`;
	if (err instanceof Error) {
		const status = err.response?.status;
		return `${err.name}: ${err.message}${status ? ` (HTTP ${status})` : ''}`;
	}
	return short(err);
}

// graphqlErrors returns the GraphQL errors a subscription ended with,
// and how they came: in a next result's errors, or to the error callback.
function graphqlErrors(out) {
	if (Array.isArray(out.error)) return { errors: out.error, via: 'error callback' };
	if (out.error && Array.isArray(out.error.errors)) return { errors: out.error.errors, via: 'error callback' };
	if (out.error && typeof out.error === 'object' && out.error.message && !(out.error instanceof Error && out.error.response)) {
		// subscriptions-transport-ws gives the error callback the first error.
		if (out.error.extensions || 'locations' in out.error || 'path' in out.error) return { errors: [out.error], via: 'error callback' };
	}
	const withErrors = out.results.find((r) => Array.isArray(r.errors));
	if (withErrors) return { errors: withErrors.errors, via: 'next payload errors' };
	return { errors: [], via: 'nothing' };
}

function expectCode(out, codes, what) {
	assert(!out.timedOut, `${what}: neither an error nor complete within the time limit (results: ${short(out.results)})${closesSeen(out)}`);
	const { errors, via } = graphqlErrors(out);
	assert(errors.length > 0, `${what}: no GraphQL error; error callback: ${describeError(out.error)}; results: ${short(out.results)}; completed: ${out.completed}`);
	const got = errors.map((e) => e?.extensions?.code);
	assert(got.some((c) => codes.includes(c)), `${what}: extensions.code ${short(got)}, want ${codes.join(' or ')} (errors: ${short(errors)})`);
	const data = out.results.map((r) => r.data).filter((d) => d != null);
	assert(data.length === 0, `${what}: data alongside the error: ${short(data)}`);
	return `${got.filter(Boolean).join(',')} via ${via}: ${short(errors[0]?.message, 80)}`;
}

// Reference clients, configured as a frontend would.

function wsClient(authorization = `Bearer ${token}`, extra = {}) {
	const closes = [];
	const client = createWSClient({
		url: wsURL,
		webSocketImpl: WebSocket,
		connectionParams: { authorization },
		on: { closed: (e) => closes.push(e) },
		...extra,
	});
	client.closes = closes;
	return client;
}

function sseClient(authorization = `Bearer ${token}`, extra = {}) {
	return createSSEClient({
		url: httpURL,
		singleConnection: false,
		headers: { Authorization: authorization },
		...extra,
	});
}

// legacyClient returns a connected subscriptions-transport-ws client (or
// rejects with what its connectionCallback got), and the close events of its
// socket.
function legacyClient(authorization = `Bearer ${token}`) {
	return new Promise((resolve, reject) => {
		const closes = [];
		let client;
		client = new SubscriptionClient(
			wsURL,
			{
				connectionParams: { authorization },
				reconnect: false,
				timeout: 30_000,
				connectionCallback: (err) => {
					if (err) reject(Object.assign(new Error('connection_error'), { payload: err, client, closes }));
					else resolve(client);
				},
			},
			WebSocket,
		);
		client.closes = closes;
		client.client.addEventListener('close', (e) => closes.push({ code: e.code, reason: e.reason }));
	});
}

function legacySubscribe(client, request) {
	return (sink) => {
		const sub = client.request(request).subscribe(sink);
		return () => sub.unsubscribe();
	};
}

function waitFor(cond, ms) {
	return new Promise((resolve) => {
		const t0 = Date.now();
		const tick = () => {
			if (cond() || Date.now() - t0 > ms) return resolve(cond());
			setTimeout(tick, 20);
		};
		tick();
	});
}

// ---- the checks -------------------------------------------------------------

const watchdog = setTimeout(() => {
	failed++;
	console.log(`FAIL the whole run took more than ${runTimeoutMs} ms`);
	console.log(`${passed} passed, ${failed} failed`);
	process.exit(1);
}, runTimeoutMs);

const clients = [];
let answerA = null;
let contentA = null;
let missingID = null;

await check('http: startConversation over fetch returns an answer in status STREAMING', async () => {
	answerA = await startAnswer();
	// A well-formed id of a message that does not exist: the real id's
	// kind prefix with another local id.
	const raw = Buffer.from(answerA, 'base64url').toString('utf8');
	const colon = raw.indexOf(':');
	missingID = Buffer.from(`${raw.slice(0, colon + 1)}00000000-0000-4000-8000-000000000000`, 'utf8').toString('base64url');
	return `answer ${answerA}`;
});

// graphql-transport-ws -------------------------------------------------------

const ws = wsClient();
clients.push(() => ws.dispose());

await check('graphql-ws: the answer streams to done with message COMPLETE; seqs increase; deltas add up to the content', async () => {
	assert(answerA, 'no answer (startConversation failed)');
	const out = await collect((sink) => ws.subscribe({ query: ANSWER, variables: { id: answerA } }, sink), { closes: ws.closes });
	const evs = events(out, 'graphql-ws');
	assert(out.completed, 'graphql-ws: the subscription did not complete after the done event');
	contentA = checkWholeAnswer(evs, answerA, 'graphql-ws');
	assert(evs.length > 1, `graphql-ws: a single event for an answer subscribed to while STREAMING`);
	return `${evs.length} events, seq ${evs[0].seq}..${evs[evs.length - 1].seq}, ${contentA.length} chars`;
});

await check('graphql-ws: a finished answer yields its final event at once', async () => {
	assert(contentA, 'no finished answer (previous check failed)');
	const t0 = Date.now();
	const out = await collect((sink) => ws.subscribe({ query: ANSWER, variables: { id: answerA } }, sink), { closes: ws.closes });
	const evs = events(out, 'graphql-ws (finished)');
	assert(out.completed, 'graphql-ws (finished): the subscription did not complete');
	assert(evs.length === 1, `graphql-ws (finished): ${evs.length} events, want the final one only`);
	const content = checkWholeAnswer(evs, answerA, 'graphql-ws (finished)');
	assert(content === contentA, `graphql-ws (finished): content differs from the streamed one: ${firstDiff(content, contentA)}`);
	return `${Date.now() - t0} ms`;
});

await check('graphql-ws: resume with after = seq of the 3rd event; first 3 deltas + the rest = content', async () => {
	const id = await startAnswer();
	const head = await collect((sink) => ws.subscribe({ query: ANSWER, variables: { id } }, sink), { stopAfter: 3, closes: ws.closes });
	const first = events(head, 'graphql-ws (first 3)');
	assert(head.stopped && first.length === 3, `graphql-ws (first 3): got ${first.length} events before the end (answer too short?)`);
	assert(first.every((e) => !e.done), 'graphql-ws (first 3): the answer was done within 3 events');
	const after = first[2].seq;
	const rest = events(
		await collect((sink) => ws.subscribe({ query: ANSWER, variables: { id, after } }, sink), { closes: ws.closes }),
		`graphql-ws (after ${after})`,
	);
	const content = checkStream(rest, id, `graphql-ws (after ${after})`, { from: after });
	const text = deltas(first) + deltas(rest);
	assert(text === content, `resumed text ≠ final content: ${firstDiff(text, content)}`);
	return `after=${after}, ${rest.length} more events, seq ${rest[0].seq}..${rest[rest.length - 1].seq}`;
});

await check('graphql-ws: unknown message id → NOT_FOUND', async () => {
	assert(missingID, 'no id (startConversation failed)');
	const out = await collect((sink) => ws.subscribe({ query: ANSWER, variables: { id: missingID } }, sink), { closes: ws.closes });
	return expectCode(out, ['NOT_FOUND'], 'graphql-ws');
});

if (otherToken) {
	await check("graphql-ws: another user's answer → NOT_FOUND", async () => {
		assert(answerA, 'no answer (startConversation failed)');
		const other = wsClient(`Bearer ${otherToken}`);
		clients.push(() => other.dispose());
		const out = await collect((sink) => other.subscribe({ query: ANSWER, variables: { id: answerA } }, sink), { closes: other.closes });
		return expectCode(out, ['NOT_FOUND'], 'graphql-ws (other user)');
	});
}

await check('graphql-ws: malformed document → GRAPHQL_PARSE_FAILED through the error callback', async () => {
	const out = await collect((sink) => ws.subscribe({ query: MALFORMED }, sink), { closes: ws.closes });
	assert(Array.isArray(out.error), `want an error message (the error callback given an array of GraphQL errors); got error ${describeError(out.error)}, results ${short(out.results)}`);
	return expectCode(out, ['GRAPHQL_PARSE_FAILED'], 'graphql-ws');
});

await check('graphql-ws: invalid document → GRAPHQL_VALIDATION_FAILED through the error callback', async () => {
	const out = await collect((sink) => ws.subscribe({ query: INVALID }, sink), { closes: ws.closes });
	assert(Array.isArray(out.error), `want an error message (the error callback given an array of GraphQL errors); got error ${describeError(out.error)}, results ${short(out.results)}`);
	return expectCode(out, ['GRAPHQL_VALIDATION_FAILED'], 'graphql-ws');
});

await check('graphql-ws: bad token in connectionParams → close 4403', async () => {
	// 4403 is not fatal to graphql-ws (a token may be refreshed); a frontend
	// without a fresh token does not retry.
	const bad = wsClient(badToken, { retryAttempts: 0 });
	clients.push(() => bad.dispose());
	const out = await collect((sink) => bad.subscribe({ query: ANSWER, variables: { id: answerA || missingID } }, sink));
	assert(!out.timedOut, `no error within the time limit (results: ${short(out.results)})`);
	assert(out.results.length === 0, `results with a bad token: ${short(out.results)}`);
	const code = out.error?.code;
	assert(code === 4403, `error callback got ${describeError(out.error)}, want a close event with code 4403; closes seen: ${short(bad.closes.map((e) => [e.code, e.reason]))}`);
	return `close ${code} ${JSON.stringify(out.error.reason)}`;
});

// graphql-sse, distinct connections ---------------------------------------------

const sse = sseClient();
clients.push(() => sse.dispose());

await check('graphql-sse: the answer streams to done with message COMPLETE; seqs increase; deltas add up to the content', async () => {
	const id = await startAnswer();
	const out = await collect((sink) => sse.subscribe({ query: ANSWER, variables: { id } }, sink));
	const evs = events(out, 'graphql-sse');
	assert(out.completed, 'graphql-sse: the subscription did not complete after the done event');
	const content = checkWholeAnswer(evs, id, 'graphql-sse');
	assert(evs.length > 1, 'graphql-sse: a single event for an answer subscribed to while STREAMING');
	return `${evs.length} events, seq ${evs[0].seq}..${evs[evs.length - 1].seq}, ${content.length} chars`;
});

await check('graphql-sse: resume with after = seq of the 3rd event', async () => {
	const id = await startAnswer();
	const head = await collect((sink) => sse.subscribe({ query: ANSWER, variables: { id } }, sink), { stopAfter: 3 });
	const first = events(head, 'graphql-sse (first 3)');
	assert(head.stopped && first.length === 3, `graphql-sse (first 3): got ${first.length} events before the end`);
	const after = first[2].seq;
	const rest = events(
		await collect((sink) => sse.subscribe({ query: ANSWER, variables: { id, after } }, sink)),
		`graphql-sse (after ${after})`,
	);
	const content = checkStream(rest, id, `graphql-sse (after ${after})`, { from: after });
	const text = deltas(first) + deltas(rest);
	assert(text === content, `resumed text ≠ final content: ${firstDiff(text, content)}`);
	return `after=${after}, ${rest.length} more events`;
});

await check('graphql-sse: unknown message id → NOT_FOUND', async () => {
	assert(missingID, 'no id (startConversation failed)');
	const out = await collect((sink) => sse.subscribe({ query: ANSWER, variables: { id: missingID } }, sink));
	return expectCode(out, ['NOT_FOUND'], 'graphql-sse');
});

if (otherToken) {
	await check("graphql-sse: another user's answer → NOT_FOUND", async () => {
		assert(answerA, 'no answer (startConversation failed)');
		const other = sseClient(`Bearer ${otherToken}`);
		clients.push(() => other.dispose());
		const out = await collect((sink) => other.subscribe({ query: ANSWER, variables: { id: answerA } }, sink));
		return expectCode(out, ['NOT_FOUND'], 'graphql-sse (other user)');
	});
}

await check('graphql-sse: malformed document → GRAPHQL_PARSE_FAILED', async () => {
	const out = await collect((sink) => sse.subscribe({ query: MALFORMED }, sink));
	return expectCode(out, ['GRAPHQL_PARSE_FAILED'], 'graphql-sse');
});

await check('graphql-sse: invalid document → GRAPHQL_VALIDATION_FAILED', async () => {
	const out = await collect((sink) => sse.subscribe({ query: INVALID }, sink));
	return expectCode(out, ['GRAPHQL_VALIDATION_FAILED'], 'graphql-sse');
});

await check('graphql-sse: bad token → HTTP 401 to the error callback', async () => {
	const bad = sseClient(badToken, { retryAttempts: 0 });
	clients.push(() => bad.dispose());
	const out = await collect((sink) => bad.subscribe({ query: ANSWER, variables: { id: answerA || missingID } }, sink));
	assert(!out.timedOut, 'no error within the time limit');
	assert(out.results.length === 0, `results with a bad token: ${short(out.results)}`);
	const status = out.error?.response?.status;
	assert(status === 401, `error callback got ${describeError(out.error)}, want a NetworkError with HTTP 401`);
	const auth = out.error.response.headers.get('www-authenticate') || '';
	assert(/^Bearer\b/i.test(auth), `401 without WWW-Authenticate: Bearer (got ${JSON.stringify(auth)})`);
	return `HTTP ${status}, WWW-Authenticate: ${short(auth, 60)}`;
});

// legacy graphql-ws (subscriptions-transport-ws) -------------------------------------

let legacyC = null;
await check('subscriptions-transport-ws: connects with connectionParams (connection_ack)', async () => {
	legacyC = await legacyClient();
	clients.push(() => legacyC.close());
	return `subprotocol ${legacyC.client.protocol}`;
});

await check('subscriptions-transport-ws: the answer streams to done with message COMPLETE; seqs increase; deltas add up to the content', async () => {
	assert(legacyC, 'no connection');
	const id = await startAnswer();
	const out = await collect(legacySubscribe(legacyC, { query: ANSWER, variables: { id } }));
	const evs = events(out, 'subscriptions-transport-ws');
	assert(out.completed, 'subscriptions-transport-ws: the subscription did not complete after the done event');
	const content = checkWholeAnswer(evs, id, 'subscriptions-transport-ws');
	assert(evs.length > 1, 'subscriptions-transport-ws: a single event for an answer subscribed to while STREAMING');
	return `${evs.length} events, seq ${evs[0].seq}..${evs[evs.length - 1].seq}, ${content.length} chars`;
});

await check('subscriptions-transport-ws: unknown message id → NOT_FOUND', async () => {
	assert(legacyC && missingID, 'no connection or id');
	const out = await collect(legacySubscribe(legacyC, { query: ANSWER, variables: { id: missingID } }));
	return expectCode(out, ['NOT_FOUND'], 'subscriptions-transport-ws');
});

await check('subscriptions-transport-ws: invalid document → GRAPHQL_VALIDATION_FAILED', async () => {
	assert(legacyC, 'no connection');
	const out = await collect(legacySubscribe(legacyC, { query: INVALID }));
	return expectCode(out, ['GRAPHQL_VALIDATION_FAILED'], 'subscriptions-transport-ws');
});

await check('subscriptions-transport-ws: malformed document → GRAPHQL_PARSE_FAILED', async () => {
	assert(legacyC, 'no connection');
	const out = await collect(legacySubscribe(legacyC, { query: MALFORMED }));
	return expectCode(out, ['GRAPHQL_PARSE_FAILED'], 'subscriptions-transport-ws');
});

await check('subscriptions-transport-ws: bad token → connection_error, then close 4403', async () => {
	let err;
	try {
		const c = await legacyClient(badToken);
		clients.push(() => c.close());
	} catch (e) {
		err = e;
	}
	assert(err, 'the connection was acknowledged with a bad token');
	clients.push(() => err.client.close());
	assert(err.payload && typeof err.payload.message === 'string', `connection_error payload without a message: ${short(err.payload)}`);
	await waitFor(() => err.closes.length > 0, 3000);
	assert(err.closes.length > 0, 'the server did not close the connection after connection_error');
	const code = err.closes[0].code;
	assert(code === 4403, `closed with ${code} ${JSON.stringify(err.closes[0].reason)}, want 4403`);
	return `connection_error ${JSON.stringify(err.payload.message)}, close ${code}`;
});

// ----------------------------------------------------------------------------

for (const dispose of clients) {
	try {
		await dispose();
	} catch {
		/* already closed */
	}
}
clearTimeout(watchdog);
console.log(`run time ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
