#!/bin/sh
# The entrypoint of Sprout's resource images (sprout/resource-postgres, -mysql, -redis).
# usage: sprout-resource run | health | dump FILE | promote | follow HOST
#
# The data lives in the volume mounted at /data. On the first `run` the engine's data
# directory is initialised there and the database and its user are created from
# SPROUT_RESOURCE_DB, SPROUT_RESOURCE_USER and SPROUT_RESOURCE_PASSWORD; if a snapshot was
# copied to /data/.sprout-restore before that first start, it is loaded into the new database
# before the server accepts connections. Then the server runs in the foreground.
# `health` exits 0 when the server answers; `dump FILE` writes a logical snapshot to FILE
# (pg_dump -Fc, mariadb-dump, redis RDB), which `run` can restore as above.
#
# Read replicas (postgres): a primary given SPROUT_RESOURCE_REPL_PASSWORD gets a `replicator`
# role allowed to stream. A container with SPROUT_RESOURCE_ROLE=replica copies the primary
# named by SPROUT_RESOURCE_PRIMARY with pg_basebackup -R on its first `run` and then runs as
# a hot standby. `promote` turns a replica into a primary (pg_ctl promote); `follow HOST`
# makes a replica stream from another primary.
set -eu
kind="${SPROUT_RESOURCE_KIND:?SPROUT_RESOURCE_KIND is not set}"
db="${SPROUT_RESOURCE_DB:-app}"
user="${SPROUT_RESOURCE_USER:-app}"
pw="${SPROUT_RESOURCE_PASSWORD:?SPROUT_RESOURCE_PASSWORD is not set}"
rpw="${SPROUT_RESOURCE_REPL_PASSWORD:-}"
role="${SPROUT_RESOURCE_ROLE:-primary}"
restore=/data/.sprout-restore

say() { echo "[sprout-resource $kind] $*"; }
fail() { echo "[sprout-resource $kind] error: $*" >&2; exit 1; }

# The names and the password go into SQL and command lines unquoted: Sprout generates them
# from these alphabets, anything else is refused.
case "$db$user" in *[!a-z0-9_]* | "") fail "database and user names must be [a-z0-9_]" ;; esac
case "$pw" in *[!A-Za-z0-9]* | "") fail "the password must be [A-Za-z0-9]" ;; esac
case "$rpw" in *[!A-Za-z0-9]*) fail "the replication password must be [A-Za-z0-9]" ;; esac

as() { u="$1"; shift; setpriv --reuid="$u" --regid="$u" --init-groups "$@"; }

pg_bin=/usr/lib/postgresql/15/bin
pgdata=/data/postgres
my_sock=/run/mysqld/mysqld.sock

postgres_init() {
    [ -s "$pgdata/PG_VERSION" ] && return 0
    say "initialising $pgdata"
    mkdir -p "$pgdata"
    chown postgres:postgres /data "$pgdata"
    chmod 700 "$pgdata"
    as postgres "$pg_bin/initdb" -D "$pgdata" -U postgres -E UTF8 --locale=C \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    echo "listen_addresses = '*'" >>"$pgdata/postgresql.conf"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
        >>"$pgdata/pg_hba.conf"
    as postgres "$pg_bin/pg_ctl" -D "$pgdata" -o "-c listen_addresses='' -k /tmp" -w start >/dev/null
    as postgres psql -q -h /tmp -v ON_ERROR_STOP=1 -d postgres <<SQL
CREATE ROLE "$user" LOGIN PASSWORD '$pw';
CREATE DATABASE "$db" OWNER "$user";
SQL
    if [ -n "$rpw" ]; then
        say "allowing read replicas to stream"
        as postgres psql -q -h /tmp -v ON_ERROR_STOP=1 -d postgres \
            -c "CREATE ROLE replicator REPLICATION LOGIN PASSWORD '$rpw'"
        printf 'host replication replicator 0.0.0.0/0 scram-sha-256\n' >>"$pgdata/pg_hba.conf"
        echo "wal_keep_size = '256MB'" >>"$pgdata/postgresql.conf"
    fi
    if [ -f "$restore" ]; then
        say "restoring the snapshot"
        chmod 644 "$restore"
        as postgres "$pg_bin/pg_restore" -h /tmp --no-owner --role="$user" --exit-on-error \
            -d "$db" "$restore"
        rm -f "$restore"
    fi
    as postgres "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
}

# The conninfo a replica streams from HOST with.
conninfo() { echo "host=$1 port=5432 user=replicator password=$rpw"; }

postgres_replica_init() {
    [ -s "$pgdata/PG_VERSION" ] && return 0
    primary="${SPROUT_RESOURCE_PRIMARY:?SPROUT_RESOURCE_PRIMARY is not set}"
    [ -n "$rpw" ] || fail "a replica needs SPROUT_RESOURCE_REPL_PASSWORD"
    case "$primary" in *[!a-z0-9.-]* | "") fail "bad primary host '$primary'" ;; esac
    say "copying the primary $primary (pg_basebackup)"
    mkdir -p "$pgdata"
    chown postgres:postgres /data "$pgdata"
    chmod 700 "$pgdata"
    i=0
    until as postgres env PGPASSWORD="$rpw" "$pg_bin/pg_basebackup" -h "$primary" -p 5432 \
        -U replicator -D "$pgdata" -R -X stream -c fast; do
        i=$((i + 1))
        [ "$i" -lt 60 ] || fail "pg_basebackup from $primary kept failing"
        find "$pgdata" -mindepth 1 -delete
        sleep 2
    done
    echo "primary_conninfo = '$(conninfo "$primary")'" >>"$pgdata/postgresql.auto.conf"
    rm -f "$restore"
}

mysql_wait() {
    i=0
    until mariadb-admin --socket="$1" -uroot ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 120 ] || fail "mariadbd did not start"
        sleep 0.5
    done
}

mysql_init() {
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    [ -d /data/mysql/mysql ] && return 0
    say "initialising /data/mysql"
    mkdir -p /data/mysql
    chown mysql:mysql /data/mysql
    mariadb-install-db --user=mysql --datadir=/data/mysql --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
    init_sock=/run/mysqld/init.sock
    mariadbd --user=mysql --datadir=/data/mysql --skip-networking --socket="$init_sock" &
    pid=$!
    mysql_wait "$init_sock"
    mariadb --socket="$init_sock" -uroot <<SQL
CREATE DATABASE \`$db\`;
CREATE USER '$user'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';
SQL
    if [ -f "$restore" ]; then
        say "restoring the snapshot"
        mariadb --socket="$init_sock" -uroot "$db" <"$restore"
        rm -f "$restore"
    fi
    mariadb-admin --socket="$init_sock" -uroot shutdown
    wait "$pid" || true
}

redis_init() {
    mkdir -p /data/redis
    if [ -f "$restore" ] && [ ! -f /data/redis/dump.rdb ]; then
        say "restoring the snapshot"
        mv "$restore" /data/redis/dump.rdb
    fi
    chown -R redis:redis /data/redis
}

cmd="${1:-run}"
case "$kind:$cmd" in
postgres:run)
    if [ "$role" = replica ]; then postgres_replica_init; else postgres_init; fi
    say "starting PostgreSQL"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$pg_bin/postgres" -D "$pgdata" -k /tmp
    ;;
postgres:health) exec "$pg_bin/pg_isready" -q -h 127.0.0.1 -p 5432 -d "$db" -U "$user" ;;
postgres:dump)
    PGPASSWORD="$pw" exec "$pg_bin/pg_dump" -Fc -h 127.0.0.1 -U "$user" -d "$db" -f "${2:?dump FILE}"
    ;;
postgres:promote)
    as postgres "$pg_bin/pg_ctl" -D "$pgdata" -w -t 120 promote
    ;;
postgres:follow)
    host="${2:?follow HOST}"
    case "$host" in *[!a-z0-9.-]*) fail "bad primary host '$host'" ;; esac
    as postgres psql -q -h /tmp -v ON_ERROR_STOP=1 -d postgres \
        -c "ALTER SYSTEM SET primary_conninfo = '$(conninfo "$host")'" -c "SELECT pg_reload_conf()" \
        >/dev/null
    ;;
mysql:run)
    mysql_init
    say "starting MariaDB"
    exec mariadbd --user=mysql --datadir=/data/mysql --bind-address=0.0.0.0 --port=3306 \
        --socket="$my_sock" --skip-name-resolve
    ;;
mysql:health) exec mariadb-admin --socket="$my_sock" -uroot ping ;;
mysql:dump)
    mariadb-dump --socket="$my_sock" -uroot --single-transaction --routines --triggers "$db" \
        >"${2:?dump FILE}"
    ;;
redis:run)
    redis_init
    say "starting Redis"
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --bind 0.0.0.0 \
        --port 6379 --protected-mode no --dir /data/redis --requirepass "$pw" \
        --appendonly no --save "1 1" --daemonize no
    ;;
redis:health)
    [ "$(redis-cli -h 127.0.0.1 -p 6379 -a "$pw" --no-auth-warning PING)" = PONG ]
    ;;
redis:dump)
    redis-cli -h 127.0.0.1 -p 6379 -a "$pw" --no-auth-warning --rdb "${2:?dump FILE}" >/dev/null
    ;;
*) fail "unknown command '$cmd' for $kind (run, health, dump FILE; postgres: promote, follow HOST)" ;;
esac
