#!/bin/sh
# Runs once, from /docker-entrypoint-initdb.d of the official postgres image, when the primary's
# data directory is first initialised: creates the replication role, lets it connect for
# replication (scram-sha-256) and creates the physical slot the replica streams from, so the
# primary keeps the WAL the replica has not received yet (no re-clone after a replica outage).
set -eu

: "${POSTGRES_REPLICATION_USER:?set POSTGRES_REPLICATION_USER}"
: "${POSTGRES_REPLICATION_PASSWORD:?set POSTGRES_REPLICATION_PASSWORD}"
slot="${POSTGRES_REPLICATION_SLOT:-replica_1}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=repl_user="$POSTGRES_REPLICATION_USER" \
    --set=repl_password="$POSTGRES_REPLICATION_PASSWORD" \
    --set=slot="$slot" <<'SQL'
CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
SELECT pg_create_physical_replication_slot(:'slot');
SQL

# The image's pg_hba.conf allows every database but not the `replication` pseudo-database.
printf 'host replication %s all scram-sha-256\n' "$POSTGRES_REPLICATION_USER" >> "$PGDATA/pg_hba.conf"
