#!/usr/bin/env bash
# clients.sh checks askgate's subscription transports with the reference
# clients (scripts/clients/clients.mjs): graphql-ws's createClient over
# graphql-transport-ws, graphql-sse's createClient in distinct connections
# mode, and subscriptions-transport-ws's SubscriptionClient over the legacy
# graphql-ws subprotocol. Like audit.sh it builds the binary, starts
# `askgate serve` in development mode on a free loopback port with a
# throw-away SQLite database, a fixed JWT secret and the built-in demo LLM
# backend, mints two tokens (the user's, and another user's for the
# NOT_FOUND check), runs the clients and stops the server. It fails when
# any check fails.
#
# Environment:
#   GO                       the go command (go)
#   CLIENTS_START_TIMEOUT    seconds to wait for the server to come up (30)
#   CLIENTS_CHECK_TIMEOUT_MS time limit of one check in ms (15000)
#   CLIENTS_TIMEOUT_MS       time limit of the whole run of clients.mjs in ms (55000)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
clients_dir=$root/scripts/clients
GO=${GO:-go}
START_TIMEOUT=${CLIENTS_START_TIMEOUT:-30}

log() { printf 'clients: %s\n' "$*" >&2; }
die() { printf 'clients: ERROR: %s\n' "$*" >&2; exit 1; }

if ! command -v "$GO" >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	PATH=$PATH:/usr/local/go/bin
fi
command -v "$GO" >/dev/null || die "$GO not found"

# Node.js 20 or newer (graphql-ws 6 needs it) runs the clients.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	[[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null ||
		die "node and npm are needed; install Node.js 20 or newer and run this again"
	log "installing nodejs and npm from Debian's packages"
	apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2 ||
		die "apt-get install nodejs npm failed"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || die "node $(node --version) is too old: the reference clients need Node.js 20 or newer"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/askgate-clients.XXXXXX")
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

# The pinned clients; installed again when the lock file changed.
if [[ ! -f $clients_dir/node_modules/.package-lock.json ||
	$clients_dir/package-lock.json -nt $clients_dir/node_modules/.package-lock.json ]]; then
	log "npm ci in scripts/clients"
	(cd "$clients_dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
fi

log "building askgate"
"$GO" build -o "$tmp/askgate" ./cmd/askgate || die "go build failed"

# Only the variables set here: a developer's own ASKGATE_* settings (Redis,
# persisted-only mode, an issuer, a real LLM, …) must not change what is
# checked: the answers come from the built-in demo backend.
while IFS= read -r name; do
	unset "$name"
done < <(compgen -e | grep '^ASKGATE_' || true)
export ASKGATE_MODE=development
export ASKGATE_ADDR=127.0.0.1:0
export ASKGATE_DATABASE_URL=sqlite:$tmp/askgate.db
export ASKGATE_JWT_SECRET=askgate-clients-secret-0123456789abcdefghijklmn
export ASKGATE_LOG_LEVEL=warn

token=$("$tmp/askgate" token --sub clients --scope "read:chat write:chat") || die "askgate token failed"
other_token=$("$tmp/askgate" token --sub clients-other --scope "read:chat write:chat") || die "askgate token failed"

# Port 0 lets the kernel pick a free port; development mode prints the
# GraphQL URL, which says which. The log files are created first: the
# background job opens them only when it gets to run, and sed below must
# not look for them before (a missing file fails it, and with it the script).
: >"$tmp/stdout"
: >"$tmp/stderr"
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

log "running the reference subscription clients against $url"
status=0
ASKGATE_TOKEN=$token ASKGATE_TOKEN_OTHER=$other_token node "$clients_dir/clients.mjs" "$url" || status=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
	show_server_log
	die "askgate serve died during the checks"
fi
if ((status != 0)); then
	show_server_log
	log "subscription transports: a reference client check failed (see FAIL above)"
	exit "$status"
fi
