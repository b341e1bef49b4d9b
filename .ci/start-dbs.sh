#!/usr/bin/env bash
# Makes sure PostgreSQL and MariaDB answer on 127.0.0.1 the way the tests
# expect: PostgreSQL 5432 with trust auth and databases test/postgres/root;
# MariaDB 3306 with root and an empty password and database test.
# Starts them if installed but stopped; installs them from Debian's packages
# if missing. Idempotent.
set -euo pipefail

log() { echo "start-dbs: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
    if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
wait_for() { # name, command...
    local name=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "$name did not come up"; return 1
}

pg_up() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'select 1' ; }
if ! pg_up >/dev/null 2>&1; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        log "installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        log "PostgreSQL: trust auth on 127.0.0.1 (test machine only)"
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    log "starting PostgreSQL $ver"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || true
    wait_for PostgreSQL pg_up
fi
for db in test root; do
    if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='$db'")" != 1 ]; then
        psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
    fi
done
log "PostgreSQL ready on 127.0.0.1:5432"

my_up() { mysql -h 127.0.0.1 -P 3306 -uroot -e 'select 1' ; }
if ! my_up >/dev/null 2>&1; then
    if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
        log "installing MariaDB"
        apt_install mariadb-server mariadb-client
    fi
    log "starting MariaDB"
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB-socket as_root mysql -uroot -e 'select 1'
    if ! my_up >/dev/null 2>&1; then
        log "MariaDB: root over TCP with an empty password (test machine only)"
        as_root mysql -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
    fi
    wait_for MariaDB my_up
fi
mysql -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
log "MariaDB ready on 127.0.0.1:3306"
