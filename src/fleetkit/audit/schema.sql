-- Audit storage (PostgreSQL). __S__ is replaced by the quoted schema name. Statements are
-- separated by lines holding only "-- @@" (PL/pgSQL bodies contain semicolons).
CREATE SCHEMA IF NOT EXISTS __S__
-- @@
-- Partitioned by month on "time": the primary key must include the partition key, so the
-- idempotency key is (event_id, time); a producer retry resends the same bytes, so a duplicate
-- always has the same time and lands in the same partition.
CREATE TABLE IF NOT EXISTS __S__.audit_events (
    event_id    uuid        NOT NULL,
    time        timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    resource    text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    reason      text,
    client_ip   inet,
    user_agent  text,
    request_id  text,
    instance    text,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    batch_id    bigint      NOT NULL,
    PRIMARY KEY (event_id, time)
) PARTITION BY RANGE (time)
-- @@
CREATE INDEX IF NOT EXISTS audit_events_actor_time ON __S__.audit_events (actor, time)
-- @@
CREATE INDEX IF NOT EXISTS audit_events_resource_time ON __S__.audit_events (resource, time)
-- @@
CREATE SEQUENCE IF NOT EXISTS __S__.audit_batch_seq
-- @@
-- One row per inserted batch: the hash chain. hash = sha256(prev_hash || int8send(batch_id) ||
-- rows_digest), rows_digest = sha256 of the batch's canonical rows ordered by event_id.
CREATE TABLE IF NOT EXISTS __S__.audit_batches (
    batch_id    bigint      PRIMARY KEY,
    chain_pos   bigint      NOT NULL UNIQUE,
    row_count   integer     NOT NULL,
    min_time    timestamptz NOT NULL,
    max_time    timestamptz NOT NULL,
    rows_digest bytea       NOT NULL,
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
)
-- @@
-- Written by `fleetkit audit prune`: rows older than this were dropped with their partitions,
-- so `verify` checks only the chain links of batches that reach below it.
CREATE TABLE IF NOT EXISTS __S__.audit_retention (
    id            integer     PRIMARY KEY CHECK (id = 1),
    pruned_before timestamptz NOT NULL
)
-- @@
CREATE OR REPLACE FUNCTION __S__.audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (no % placeholders: this text also goes through DB-API drivers in migrations)
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit log is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
END
$$
-- @@
CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON __S__.audit_events
    FOR EACH ROW EXECUTE FUNCTION __S__.audit_refuse_change()
-- @@
CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON __S__.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION __S__.audit_refuse_change()
-- @@
CREATE OR REPLACE TRIGGER audit_batches_append_only BEFORE UPDATE OR DELETE ON __S__.audit_batches
    FOR EACH ROW EXECUTE FUNCTION __S__.audit_refuse_change()
-- @@
CREATE OR REPLACE TRIGGER audit_batches_no_truncate BEFORE TRUNCATE ON __S__.audit_batches
    FOR EACH STATEMENT EXECUTE FUNCTION __S__.audit_refuse_change()
-- @@
-- Grants are the second lock: nobody but the owner (migrations, prune) may change history.
-- The application role gets SELECT, INSERT and the sequence (see `grant_statements`).
REVOKE UPDATE, DELETE, TRUNCATE ON __S__.audit_events, __S__.audit_batches FROM PUBLIC
-- @@
-- Link a batch into the chain. The advisory lock serialises linking across every consumer;
-- it is taken after the batch's rows are inserted and held only until commit.
CREATE OR REPLACE FUNCTION __S__.audit_link_batch(
    p_batch bigint, p_rows integer, p_digest bytea, p_min timestamptz, p_max timestamptz
) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    v_prev bytea;
    v_pos  bigint;
    v_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('fleetkit.audit_chain:__S__'));
    SELECT b.hash, b.chain_pos INTO v_prev, v_pos
        FROM __S__.audit_batches b ORDER BY b.chain_pos DESC LIMIT 1;
    IF v_prev IS NULL THEN
        v_prev := decode(repeat('00', 32), 'hex');
        v_pos := 0;
    END IF;
    v_hash := sha256(v_prev || int8send(p_batch) || p_digest);
    INSERT INTO __S__.audit_batches
        (batch_id, chain_pos, row_count, min_time, max_time, rows_digest, prev_hash, hash)
        VALUES (p_batch, v_pos + 1, p_rows, p_min, p_max, p_digest, v_prev, v_hash);
    RETURN v_hash;
END
$$
