#!/usr/bin/env bash
# cluster.sh (make cluster) runs a local askgate cluster to try: three
# instances on 127.0.0.1:8081..8083 that share PostgreSQL (schema
# askgate_cluster of the database test) and Redis (db 2), behind a tiny
# round-robin proxy on :8080 (scripts/cluster). Any instance streams any
# answer; an instance that dies has its running answers finished as FAILED
# (interrupted) by another within a few seconds (ASKGATE_LEASE_TTL=2s).
# Ctrl-C stops everything. Logs: bin/cluster-<n>.log and bin/cluster-proxy.log.
#
# A development aid: the JWT secret below is public.
#
# Environment:
#   GO                  the go command (go)
#   CLUSTER_INSTANCES   how many instances (3)
#   CLUSTER_PORT        the proxy's port (8080)
#   CLUSTER_FIRST_PORT  the first instance's port (8081); the others follow
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
N=${CLUSTER_INSTANCES:-3}
PROXY_PORT=${CLUSTER_PORT:-8080}
FIRST_PORT=${CLUSTER_FIRST_PORT:-8081}
SCHEMA=askgate_cluster

export ASKGATE_MODE=development
export ASKGATE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test?search_path=$SCHEMA"
export ASKGATE_REDIS_URL=redis://127.0.0.1:6379/2
export ASKGATE_JWT_SECRET=askgate-local-cluster-dev-secret-not-for-production
export ASKGATE_LEASE_TTL=2s

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((i = 0; i < N; i++)); do
	port_free $((FIRST_PORT + i)) || die "port $((FIRST_PORT + i)) is in use (CLUSTER_FIRST_PORT picks others)"
done
port_free "$PROXY_PORT" || die "port $PROXY_PORT is in use (a make run? CLUSTER_PORT picks another)"

bash scripts/services.sh
log "PostgreSQL: schema $SCHEMA in the database test"
PGOPTIONS="-c client_min_messages=warning" psql -X -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d test \
	-c "create schema if not exists $SCHEMA" || die "cannot create the schema $SCHEMA"

log "building bin/askgate and bin/cluster-proxy"
mkdir -p bin
"$GO" build -o bin/askgate ./cmd/askgate
"$GO" build -o bin/cluster-proxy ./scripts/cluster
bin/askgate migrate

# detach runs a command in a session of its own, so that Ctrl-C reaches
# only this script, which then stops the processes in order.
detach() {
	if command -v setsid >/dev/null; then exec setsid "$@"; else exec "$@"; fi
}

pids=()
stop() {
	local rc=$1
	trap - INT TERM EXIT
	((${#pids[@]})) || exit "$rc"
	echo
	log "stopping (instances finish or interrupt their running answers first)"
	# Instances first, so that their last events still reach subscribers
	# through the proxy; then the proxy.
	local last=$((${#pids[@]} - 1))
	kill -TERM "${pids[@]:0:last}" 2>/dev/null || true
	wait "${pids[@]:0:last}" 2>/dev/null || true
	kill -TERM "${pids[last]}" 2>/dev/null || true
	wait 2>/dev/null || true
	log "stopped"
	exit "$rc"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

backends=()
for ((i = 1; i <= N; i++)); do
	port=$((FIRST_PORT + i - 1))
	ASKGATE_ADDR=127.0.0.1:$port detach bin/askgate serve >"bin/cluster-$i.log" 2>&1 &
	pids+=($!)
	backends+=(-backend "http://127.0.0.1:$port")
done
for ((i = 1; i <= N; i++)); do
	port=$((FIRST_PORT + i - 1))
	deadline=$((SECONDS + 30))
	until curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
		if ! kill -0 "${pids[i - 1]}" 2>/dev/null || ((SECONDS >= deadline)); then
			tail -n 20 "bin/cluster-$i.log" >&2
			die "instance $i (127.0.0.1:$port) did not start; see bin/cluster-$i.log"
		fi
		sleep 0.2
	done
done

detach bin/cluster-proxy -addr ":$PROXY_PORT" "${backends[@]}" >bin/cluster-proxy.log 2>&1 &
pids+=($!)
until curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/healthz" 2>/dev/null; do
	kill -0 "${pids[-1]}" 2>/dev/null || { cat bin/cluster-proxy.log >&2; die "the proxy did not start"; }
	sleep 0.2
done

# Every instance prints a development token for dev-user in GraphiQL; all
# are signed with the shared secret, so each is valid on every instance.
token=$(sed -n 's/^  Token: *//p' bin/cluster-1.log | head -n1)

cat <<EOF

askgate cluster is running: $N instances behind a round-robin proxy (development mode).
  GraphiQL: http://localhost:$PROXY_PORT/
  GraphQL:  http://localhost:$PROXY_PORT/graphql
  Token:    $token
EOF
for ((i = 1; i <= N; i++)); do
	printf '  instance %d: http://127.0.0.1:%d  pid %d  log bin/cluster-%d.log\n' \
		"$i" $((FIRST_PORT + i - 1)) "${pids[i - 1]}" "$i"
done
cat <<EOF
  proxy:      http://localhost:$PROXY_PORT  pid ${pids[-1]}  log bin/cluster-proxy.log
Each response names its instance in the X-Askgate-Backend header.
Ctrl-C stops everything.
EOF

# Run until Ctrl-C or the proxy ends; an instance may die (kill -9 one to
# see its answers finished by another) without stopping the cluster.
wait "${pids[-1]}" || true
