# askgate-node.sh is sourced by scripts that run Node.js checks against a
# real askgate (audit.sh, clients.sh). It provides:
#
#   log, die               messages prefixed with $name
#   require_tools MAJOR    go (from PATH or /usr/local/go/bin) and Node.js
#                          MAJOR or newer with npm, installed from Debian's
#                          packages when missing and running as root
#   npm_install DIR        npm ci in DIR when its lock file changed
#   start_askgate SECRET   builds the binary, starts `askgate serve` in
#                          development mode on a free loopback port with a
#                          throw-away SQLite database, the JWT secret SECRET
#                          and none of the caller's ASKGATE_* settings, and
#                          waits for /healthz; sets $url (…/graphql),
#                          $askgate (the binary) and $server_pid
#   mint SUB               prints a token for SUB (read:chat write:chat)
#   server_alive, show_server_log
#
# The caller sets $name and $start_timeout (seconds) before sourcing, and
# runs under `set -euo pipefail`. A trap stops the server and removes the
# temporary directory on exit.

log() { printf '%s: %s\n' "$name" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$name" "$*" >&2; exit 1; }

GO=${GO:-go}

require_tools() {
	local major=$1
	if ! command -v "$GO" >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	command -v "$GO" >/dev/null || die "$GO not found"
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		[[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null ||
			die "node and npm are needed; install Node.js $major or newer and run this again"
		log "installing nodejs and npm from Debian's packages"
		apt-get update -qq >&2 || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2 ||
			die "apt-get install nodejs npm failed"
	fi
	local have
	have=$(node -p 'process.versions.node.split(".")[0]')
	((have >= major)) || die "node $(node --version) is too old: Node.js $major or newer is needed"
}

npm_install() {
	local dir=$1
	if [[ ! -f $dir/node_modules/.package-lock.json ||
		$dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
		log "npm ci in ${dir#"$PWD"/}"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
	fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/askgate-$name.XXXXXX")
askgate=$tmp/askgate
server_pid=
url=

stop_askgate() {
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
trap stop_askgate EXIT
trap 'exit 130' INT TERM

server_alive() { kill -0 "$server_pid" 2>/dev/null; }

show_server_log() {
	log "askgate output:"
	cat "$tmp/stdout" "$tmp/stderr" >&2 || true
}

mint() { "$askgate" token --sub "$1" --scope "read:chat write:chat" || die "askgate token failed"; }

start_askgate() {
	local secret=$1
	log "building askgate"
	"$GO" build -o "$askgate" ./cmd/askgate || die "go build failed"

	# Only the variables set here: a developer's own ASKGATE_* settings
	# (Redis, persisted-only mode, an issuer, a real LLM, …) must not
	# change what is checked; answers come from the built-in demo backend.
	while IFS= read -r var; do
		unset "$var"
	done < <(compgen -e | grep '^ASKGATE_' || true)
	export ASKGATE_MODE=development
	export ASKGATE_ADDR=127.0.0.1:0
	export ASKGATE_DATABASE_URL=sqlite:$tmp/askgate.db
	export ASKGATE_JWT_SECRET=$secret
	export ASKGATE_LOG_LEVEL=warn

	# Port 0 lets the kernel pick a free port; development mode prints the
	# GraphQL URL, which says which. The log files exist before the server
	# writes them: the poll below reads them.
	: >"$tmp/stdout"
	: >"$tmp/stderr"
	"$askgate" serve >"$tmp/stdout" 2>"$tmp/stderr" &
	server_pid=$!

	local deadline=$((SECONDS + start_timeout))
	while :; do
		url=$(sed -n 's/^ *GraphQL: *\(http[^ ]*\).*$/\1/p' "$tmp/stdout" | head -n1)
		[[ -n $url ]] && break
		if ! server_alive; then
			show_server_log
			die "askgate serve exited before it was listening"
		fi
		if ((SECONDS >= deadline)); then
			show_server_log
			die "askgate serve printed no GraphQL URL within ${start_timeout}s"
		fi
		sleep 0.1
	done
	local base=${url%/graphql}
	until curl -fsS -o /dev/null --max-time 2 "$base/healthz" 2>/dev/null; do
		if ! server_alive || ((SECONDS >= deadline)); then
			show_server_log
			die "$base/healthz did not answer"
		fi
		sleep 0.1
	done
}
