#!/usr/bin/env bash
# audit.sh runs the graphql-http package's GraphQL over HTTP server audits
# (scripts/audit/audit.mjs) against a real askgate: it builds the binary,
# starts `askgate serve` in development mode on a free loopback port with a
# throw-away SQLite database and a fixed JWT secret, mints a token, runs the
# audits with it and stops the server. It fails when any MUST audit fails;
# SHOULD and MAY audits that do not hold are printed as WARN.
#
# Environment:
#   GO                 the go command (go)
#   AUDIT_START_TIMEOUT  seconds to wait for the server to come up (30)
#   AUDIT_TIMEOUT_MS     time limit of one audit request in ms (10000)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
audit_dir=$root/scripts/audit
GO=${GO:-go}
START_TIMEOUT=${AUDIT_START_TIMEOUT:-30}

log() { printf 'audit: %s\n' "$*" >&2; }
die() { printf 'audit: ERROR: %s\n' "$*" >&2; exit 1; }

if ! command -v "$GO" >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	PATH=$PATH:/usr/local/go/bin
fi
command -v "$GO" >/dev/null || die "$GO not found"

# Node.js (18 or newer, for the global fetch) runs the audits.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	[[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null ||
		die "node and npm are needed; install Node.js 18 or newer and run this again"
	log "installing nodejs and npm from Debian's packages"
	apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2 ||
		die "apt-get install nodejs npm failed"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 18)) || die "node $(node --version) is too old: the audits need Node.js 18 or newer"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/askgate-audit.XXXXXX")
server_pid=
cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The pinned audit suite; installed again when the lock file changed.
if [[ ! -f $audit_dir/node_modules/.package-lock.json ||
	$audit_dir/package-lock.json -nt $audit_dir/node_modules/.package-lock.json ]]; then
	log "npm ci in scripts/audit"
	(cd "$audit_dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
fi

log "building askgate"
"$GO" build -o "$tmp/askgate" ./cmd/askgate || die "go build failed"

# Only the variables set here: a developer's own ASKGATE_* settings (Redis,
# persisted-only mode, an issuer, …) must not change what is audited.
while IFS= read -r name; do
	unset "$name"
done < <(compgen -e | grep '^ASKGATE_' || true)
export ASKGATE_MODE=development
export ASKGATE_ADDR=127.0.0.1:0
export ASKGATE_DATABASE_URL=sqlite:$tmp/askgate.db
export ASKGATE_JWT_SECRET=askgate-audit-secret-0123456789abcdefghijklmnop
export ASKGATE_LOG_LEVEL=warn

token=$("$tmp/askgate" token --sub audit --scope "read:chat write:chat") || die "askgate token failed"

# Port 0 lets the kernel pick a free port; development mode prints the
# GraphQL URL, which says which.
: >"$tmp/stdout"; : >"$tmp/stderr" # exist before the server writes them: the poll below reads them
"$tmp/askgate" serve >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

show_server_log() {
	log "askgate output:"
	cat "$tmp/stdout" "$tmp/stderr" >&2 || true
}

url=
deadline=$((SECONDS + START_TIMEOUT))
while :; do
	url=$(sed -n 's/^ *GraphQL: *\(http[^ ]*\).*$/\1/p' "$tmp/stdout" | head -n1)
	[[ -n $url ]] && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		show_server_log
		die "askgate serve exited before it was listening"
	fi
	if ((SECONDS >= deadline)); then
		show_server_log
		die "askgate serve printed no GraphQL URL within ${START_TIMEOUT}s"
	fi
	sleep 0.1
done
base=${url%/graphql}
until curl -fsS -o /dev/null --max-time 2 "$base/healthz" 2>/dev/null; do
	if ! kill -0 "$server_pid" 2>/dev/null || ((SECONDS >= deadline)); then
		show_server_log
		die "$base/healthz did not answer"
	fi
	sleep 0.1
done

log "auditing $url"
status=0
ASKGATE_TOKEN=$token node "$audit_dir/audit.mjs" "$url" || status=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
	show_server_log
	die "askgate serve died during the audit"
fi
if ((status != 0)); then
	log "GraphQL over HTTP conformance: a MUST audit failed (see FAIL above)"
	exit "$status"
fi
