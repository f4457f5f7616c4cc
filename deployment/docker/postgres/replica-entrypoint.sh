#!/bin/sh
# Entrypoint of the streaming replica (official postgres image, run as the postgres user).
# First start: clone the primary with pg_basebackup (-R writes standby.signal and
# primary_conninfo, -S streams through the slot made by primary-init.sh). Later starts: the data
# directory exists and PostgreSQL resumes streaming. Then `exec postgres` so it gets the signals.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_PRIMARY_HOST:?set POSTGRES_PRIMARY_HOST}"
: "${POSTGRES_REPLICATION_USER:?set POSTGRES_REPLICATION_USER}"
: "${POSTGRES_REPLICATION_PASSWORD:?set POSTGRES_REPLICATION_PASSWORD}"
port="${POSTGRES_PRIMARY_PORT:-5432}"
slot="${POSTGRES_REPLICATION_SLOT:-replica_1}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    attempts=60
    until pg_isready -q -h "$POSTGRES_PRIMARY_HOST" -p "$port"; do
        attempts=$((attempts - 1))
        if [ "$attempts" -le 0 ]; then
            echo "replica: primary $POSTGRES_PRIMARY_HOST:$port not ready, giving up" >&2
            exit 1
        fi
        sleep 2
    done
    echo "replica: cloning $POSTGRES_PRIMARY_HOST:$port into $PGDATA" >&2
    export PGPASSWORD="$POSTGRES_REPLICATION_PASSWORD"
    pg_basebackup --host="$POSTGRES_PRIMARY_HOST" --port="$port" \
        --username="$POSTGRES_REPLICATION_USER" --pgdata="$PGDATA" \
        --wal-method=stream --slot="$slot" --write-recovery-conf --checkpoint=fast --no-password
    unset PGPASSWORD
    chmod 0700 "$PGDATA"
fi

exec postgres -c hot_standby=on -c hot_standby_feedback=on -c max_standby_streaming_delay=5s "$@"
