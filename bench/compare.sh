#!/usr/bin/env bash
# Compares askgate with the GraphQL Yoga + DataLoader peer of
# ../shared/bench on the chat screen query, as ../shared/bench/README.md
# describes: same PostgreSQL, same user service (bench/userservice), same
# data shape, each server pinned to core 1 in turn, autocannon pinned to
# core 0, three alternating rounds, median requests/s of each. askgate's
# cache of user profiles is off (ASKGATE_USER_CACHE_TTL=0 unless set): the
# peer calls the user service on every request, and so does askgate.
#
# Usage: bench/compare.sh   (from the repository; needs node/npm, psql, taskset)
# Env:   ROUNDS (3), DURATION (10), CONNECTIONS (32), PEER_DIR (/tmp/askgate-peer)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PEER_SRC=${PEER_SRC:-../shared/bench}
PEER_DIR=${PEER_DIR:-/tmp/askgate-peer}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}
USERS_PORT=18801 PEER_PORT=18802 ASKGATE_PORT=18803
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

bash scripts/services.sh >/dev/null

# The peer is a measuring instrument kept outside the project: install it
# in a scratch directory, never in this repository.
mkdir -p "$PEER_DIR"
cp "$PEER_SRC"/package.json "$PEER_SRC"/package-lock.json "$PEER_SRC"/peer-yoga.mjs "$PEER_DIR"/
(cd "$PEER_DIR" && { [ -d node_modules ] || npm ci --silent --no-audit --no-fund; })

go build -o "$WORK/askgate" ./cmd/askgate
go build -o "$WORK/userservice" ./bench/userservice

"$WORK/userservice" -addr 127.0.0.1:$USERS_PORT & pids+=($!)

echo "seeding both stores: 25 conversations × 12 messages for bench-user"
(cd "$PEER_DIR" && PG=$PG node peer-yoga.mjs seed bench-user)
psql -q "$PG" -c 'DROP SCHEMA IF EXISTS askgate_bench CASCADE; CREATE SCHEMA askgate_bench' >/dev/null
# Plain TCP to PostgreSQL, as node-postgres uses by default (pgx would
# otherwise negotiate TLS with the local server).
ASKGATE_DB="$PG?search_path=askgate_bench&sslmode=disable"
"$WORK/askgate" seed --database-url "$ASKGATE_DB" --sub bench-user --conversations 25 --pairs 6 >/dev/null
TOKEN=$(ASKGATE_JWT_SECRET=$SECRET "$WORK/askgate" token --sub bench-user --ttl 2h)

QUERY='{ conversations(first:20){ totalCount nodes{ id title updatedAt owner{ name avatarUrl } messages(last:10){ totalCount nodes{ id role content createdAt author{ name } } } } } }'
BODY=$(jq -cn --arg q "$QUERY" '{query: $q}')

wait_ready() { # url
	for _ in $(seq 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$1" -H 'content-type: application/json' \
			-H "authorization: Bearer $TOKEN" -d "$BODY" || true)
		[ "$code" = 200 ] && return 0
		sleep 0.1
	done
	echo "server at $1 never answered" >&2; return 1
}

start_server() { # name → prints pid
	case $1 in
	askgate)
		env ${ASKGATE_GOGC:+GOGC=$ASKGATE_GOGC} ASKGATE_DEBUG_ADDR=${ASKGATE_DEBUG_ADDR:-} ASKGATE_MODE=production ASKGATE_ADDR=127.0.0.1:$ASKGATE_PORT ASKGATE_DATABASE_URL=$ASKGATE_DB \
			ASKGATE_JWT_SECRET=$SECRET ASKGATE_USER_SERVICE_URL=http://127.0.0.1:$USERS_PORT \
			ASKGATE_USER_CACHE_TTL=${ASKGATE_USER_CACHE_TTL:-0} \
			taskset -c 1 "$WORK/askgate" serve >/dev/null 2>"$WORK/askgate.log" &
		echo $! ;;
	yoga)
		(cd "$PEER_DIR" && PG=$PG USERS=http://127.0.0.1:$USERS_PORT SECRET=$SECRET PORT=$PEER_PORT \
			exec taskset -c 1 node peer-yoga.mjs >/dev/null 2>"$WORK/yoga.log") &
		echo $! ;;
	esac
}

port_of() { [ "$1" = askgate ] && echo $ASKGATE_PORT || echo $PEER_PORT; }

measure() { # name → prints requests/s (mean over the run)
	local url="http://127.0.0.1:$(port_of "$1")/graphql"
	local pid; pid=$(start_server "$1"); pids+=("$pid")
	wait_ready "$url"
	# warm up (JIT, caches, connection pools)
	(cd "$PEER_DIR" && taskset -c 0 npx autocannon -c "$CONNECTIONS" -d 3 -m POST -H 'content-type=application/json' \
		-H "authorization=Bearer $TOKEN" -b "$BODY" "$url" >/dev/null 2>&1)
	local out
	out=$(cd "$PEER_DIR" && taskset -c 0 npx autocannon -j -c "$CONNECTIONS" -d "$DURATION" -m POST \
		-H 'content-type=application/json' -H "authorization=Bearer $TOKEN" -b "$BODY" "$url" 2>/dev/null)
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
	local non2xx; non2xx=$(jq '.non2xx + .errors' <<<"$out")
	[ "$non2xx" = 0 ] || { echo "$1: $non2xx failed requests" >&2; exit 1; }
	jq '.requests.average' <<<"$out"
}

if [ -n "${ONLY_ASKGATE:-}" ]; then # a quick look at askgate alone
	for r in $(seq "$ROUNDS"); do echo "round $r: askgate $(measure askgate) req/s"; done
	exit 0
fi
a=() y=()
for r in $(seq "$ROUNDS"); do
	a+=("$(measure askgate)"); y+=("$(measure yoga)")
	echo "round $r: askgate ${a[-1]} req/s, yoga ${y[-1]} req/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
ma=$(median "${a[@]}") my=$(median "${y[@]}")
echo "median: askgate $ma req/s, yoga $my req/s, ratio $(awk -v a="$ma" -v y="$my" 'BEGIN{printf "%.2f", a/y}')"
