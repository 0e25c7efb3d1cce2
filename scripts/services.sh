#!/usr/bin/env bash
# services.sh makes sure the PostgreSQL and Redis that askgate's tests use are
# up on 127.0.0.1 (5432 and 6379), starting them from the installed binaries
# when they are not, and installing them from Debian's packages as a last
# resort. It is idempotent: with both services up it only checks them.
#
# Environment:
#   PGHOST_ADDR, PGPORT_NUM   where PostgreSQL must answer (127.0.0.1, 5432)
#   REDIS_ADDR, REDIS_PORT    where Redis must answer (127.0.0.1, 6379)
#   PG_DATABASE               database that must exist (test)
#   SERVICES_TIMEOUT          seconds to wait for each service (30)
set -euo pipefail

PG_HOST=${PGHOST_ADDR:-127.0.0.1}
PG_PORT=${PGPORT_NUM:-5432}
PG_DB=${PG_DATABASE:-test}
REDIS_HOST=${REDIS_ADDR:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
TIMEOUT=${SERVICES_TIMEOUT:-30}

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND... polls COMMAND every half second.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "$what: not ready after ${secs}s"
			return 1
		fi
		sleep 0.5
	done
}

apt_updated=
apt_install() {
	if [[ $(id -u) -ne 0 ]]; then
		die "cannot install $* (not root); install them and run this again"
	fi
	command -v apt-get >/dev/null || die "cannot install $*: apt-get not found"
	if [[ -z $apt_updated ]]; then
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_updated=1
	fi
	log "installing $* from Debian's packages"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

# pg_cluster prints "VERSION NAME" of the cluster to start: the one configured
# for $PG_PORT if there is one, else the first one pg_lsclusters knows.
pg_cluster() {
	local clusters
	clusters=$(pg_lsclusters -h 2>/dev/null || true)
	[[ -n $clusters ]] || return 1
	awk -v port="$PG_PORT" '$3 == port { print $1, $2; found = 1; exit }
		END { if (!found) exit 1 }' <<<"$clusters" ||
		awk 'NR == 1 { print $1, $2 }' <<<"$clusters"
}

start_postgres() {
	if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_isready >/dev/null ||
		! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
		apt_install postgresql postgresql-client
	fi

	local cluster version name
	if ! cluster=$(pg_cluster); then
		# Packages installed but no cluster (or a layout pg_lsclusters does not
		# see): create the default one for the newest installed version.
		version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
		[[ -n $version ]] || die "PostgreSQL: no server version under /usr/lib/postgresql"
		log "PostgreSQL: no cluster found; creating $version/main on port $PG_PORT"
		pg_createcluster --port "$PG_PORT" "$version" main >&2 ||
			die "PostgreSQL: pg_createcluster $version main failed"
		cluster="$version main"
	fi
	read -r version name <<<"$cluster"

	# The socket directory lives on a tmpfs on a fresh boot.
	if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
		install -d -m 2775 -o postgres -g postgres /var/run/postgresql
	fi

	log "PostgreSQL: starting cluster $version/$name"
	if ! pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2; then
		# "already running" is fine if it answers below; anything else is not.
		log "PostgreSQL: pg_ctlcluster $version $name start returned an error"
	fi
	if ! wait_for "$TIMEOUT" PostgreSQL pg_ready; then
		local logfile=/var/log/postgresql/postgresql-$version-$name.log
		[[ -r $logfile ]] && tail -n 20 "$logfile" >&2
		die "PostgreSQL did not come up on $PG_HOST:$PG_PORT (cluster $version/$name)"
	fi
}

# pg_admin runs psql with superuser rights: over TCP as postgres when that
# works, else over the local socket as the postgres system user.
pg_admin() {
	if psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
		psql -X -w -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
	elif [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
		runuser -u postgres -- psql -X -w -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"
	else
		psql -X -w -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"
	fi
}

# trust_tcp makes local TCP connections use trust authentication, which a fresh
# Debian install does not (it asks for a password).
trust_tcp() {
	local hba
	hba=$(pg_admin -At -c 'show hba_file') || die "PostgreSQL: cannot read hba_file as a superuser"
	[[ -w $hba ]] || die "PostgreSQL: role postgres cannot log in over TCP and $hba is not writable"
	log "PostgreSQL: adding trust for 127.0.0.1/32 and ::1/128 at the top of $hba"
	local tmp
	tmp=$(mktemp)
	{
		echo '# added by askgate scripts/services.sh: local TCP connections are trusted (dev/CI only)'
		echo 'host all all 127.0.0.1/32 trust'
		echo 'host all all ::1/128 trust'
		cat "$hba"
	} >"$tmp"
	cat "$tmp" >"$hba"
	rm -f "$tmp"
	pg_admin -c 'select pg_reload_conf()' >/dev/null || die "PostgreSQL: reloading the configuration failed"
	sleep 0.5
}

pg_login() { psql -X -w -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; }

setup_postgres() {
	if ! pg_login; then
		trust_tcp
		pg_login || die "PostgreSQL: role postgres still cannot log in over TCP at $PG_HOST:$PG_PORT"
	fi
	if [[ $(pg_admin -At -c "select 1 from pg_database where datname = '$PG_DB'") != 1 ]]; then
		log "PostgreSQL: creating database $PG_DB"
		pg_admin -c "create database \"$PG_DB\"" || die "PostgreSQL: cannot create database $PG_DB"
	fi
	# Running as root, libpq's default user is root: let that work too.
	if [[ $(id -un) == root && $(pg_admin -At -c "select 1 from pg_roles where rolname = 'root'") != 1 ]]; then
		log "PostgreSQL: creating role root"
		pg_admin -c 'create role root login superuser' || die "PostgreSQL: cannot create role root"
	fi
}

ensure_postgres() {
	if command -v pg_isready >/dev/null && pg_ready; then
		log "PostgreSQL: up on $PG_HOST:$PG_PORT"
	else
		log "PostgreSQL: not reachable on $PG_HOST:$PG_PORT"
		start_postgres
		log "PostgreSQL: started"
	fi
	setup_postgres
}

# --------------------------------------------------------------------- Redis

redis_ready() { [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
	if command -v redis-cli >/dev/null && redis_ready; then
		log "Redis: up on $REDIS_HOST:$REDIS_PORT"
		return
	fi
	log "Redis: no answer to PING on $REDIS_HOST:$REDIS_PORT"
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
		apt_install redis-server
	fi
	log "Redis: starting redis-server"
	# Nothing is kept on disk; run from / so that no file lands in the work tree.
	(cd / && redis-server --daemonize yes --bind "$REDIS_HOST" -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no) >&2 || die "Redis: redis-server failed to start"
	wait_for "$TIMEOUT" Redis redis_ready ||
		die "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within ${TIMEOUT}s"
	log "Redis: started"
}

ensure_postgres
ensure_redis
log "ready: postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB redis://$REDIS_HOST:$REDIS_PORT"
