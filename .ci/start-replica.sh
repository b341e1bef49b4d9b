#!/usr/bin/env bash
# A PostgreSQL streaming replica of the test cluster (127.0.0.1:5432) on
# 127.0.0.1:5433, for the replica-lag tests: pg_basebackup -R into a second
# data directory, started with pg_ctl. Needs start-dbs.sh first. Idempotent:
# a replica already streaming is left alone. The tests find it through
# KEYTURN_PG_REPLICA_URL (set by .ci/run).
set -euo pipefail

PORT=${KEYTURN_PG_REPLICA_PORT:-5433}
DIR=${KEYTURN_PG_REPLICA_DIR:-/var/lib/postgresql/keyturn-replica}
log() { echo "start-replica: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_pg() { as_root runuser -u postgres -- "$@"; }
primary() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc "$1"; }
streaming() {
    [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = t ] &&
        [ "$(primary "select count(*) from pg_stat_replication where state = 'streaming'")" -ge 1 ]
}

if streaming; then
    log "replica already streaming on 127.0.0.1:$PORT"
    exit 0
fi
ver=$(primary "show server_version_num" | cut -c1-2)
bin=/usr/lib/postgresql/$ver/bin
hba=$(primary "show hba_file")
if ! as_root grep -qE '^host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    log "primary: trust replication connections from 127.0.0.1 (test machine only)"
    as_root sed -i '1i host replication all 127.0.0.1/32 trust' "$hba"
    primary "select pg_reload_conf()" >/dev/null
fi
# A replica left stopped or broken by an earlier run: start over.
if [ -f "$DIR/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$DIR" stop -m immediate >/dev/null 2>&1 || true
fi
as_root rm -rf "$DIR"
as_root install -d -o postgres -g postgres -m 700 "$DIR"
log "pg_basebackup -R from 127.0.0.1:5432 into $DIR"
as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p 5432 -U postgres -D "$DIR" -R -X stream -c fast
# Debian keeps the server's config files outside the data directory: the
# replica gets its own, minimal ones.
as_pg sh -c "printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' > '$DIR/pg_hba.conf'"
as_pg sh -c ": > '$DIR/pg_ident.conf'"
# A hot standby needs these at least as high as on the primary.
limits=""
for p in max_connections max_worker_processes max_wal_senders max_prepared_transactions max_locks_per_transaction; do
    limits="$limits$p = $(primary "show $p")\n"
done
as_pg sh -c "printf \"port = $PORT\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '/tmp'\nhot_standby = on\nshared_buffers = 32MB\n$limits\" > '$DIR/postgresql.conf'"
as_pg "$bin/pg_ctl" -D "$DIR" -l "$DIR/replica.log" -w -t 60 start >/dev/null
for _ in $(seq 1 60); do
    if streaming; then
        log "replica streaming on 127.0.0.1:$PORT"
        exit 0
    fi
    sleep 1
done
log "the replica did not start streaming; its log:"
as_root tail -n 30 "$DIR/replica.log" >&2 || true
exit 1
