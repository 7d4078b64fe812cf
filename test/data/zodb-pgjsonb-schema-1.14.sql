-- zodb-pgjsonb 1.14.2's schema DDL, copied verbatim from bluedynamics/zodb-pgjsonb
-- commit 844e61ef8be92e6dd3cfb198e58486888f222100 (tag v1.14.2), as the tests' reference:
-- test/zodb/PgJsonbSchema.test.ts applies these sections in a second database and compares its catalog
-- with the schema src/zodb/destination/PgJsonbSchema.ts creates. Sections:
--   hf: schema.py HISTORY_FREE_SCHEMA (lines 9-59)
--   hp: schema.py HISTORY_PRESERVING_ADDITIONS (lines 65-86), only history-preserving
--   lz4: the ALTERs of schema.py _set_lz4_compression (lines 89-127; object_history's only
--        history-preserving; skipped by zodb-pgjsonb when the server lacks lz4)
--   open: schema.py _ensure_zoid_seq on an empty database (line 175, MAX(zoid) = 0),
--         SCHEMA_STATE_TABLE (lines 130-136), cache_warmer.py WARM_STATS_DDL (lines 22-27), which
--         PGJsonbStorage.__init__ runs (storage.py line 572)
-- @section hf
-- Transaction metadata
CREATE TABLE IF NOT EXISTS transaction_log (
    tid         BIGINT PRIMARY KEY,
    username    TEXT DEFAULT '',
    description TEXT DEFAULT '',
    extension   BYTEA DEFAULT ''
);

-- Current object state (JSONB)
CREATE TABLE IF NOT EXISTS object_state (
    zoid        BIGINT PRIMARY KEY,
    tid         BIGINT NOT NULL REFERENCES transaction_log(tid),
    class_mod   TEXT NOT NULL,
    class_name  TEXT NOT NULL,
    state       JSONB,
    state_size  INTEGER NOT NULL,
    refs        BIGINT[] NOT NULL DEFAULT '{}'
);

-- Blob storage (tiered: inline PG bytea or S3 reference)
CREATE TABLE IF NOT EXISTS blob_state (
    zoid        BIGINT NOT NULL,
    tid         BIGINT NOT NULL,
    blob_size   BIGINT NOT NULL,
    data        BYTEA,
    s3_key      TEXT,
    PRIMARY KEY (zoid, tid)
);

-- Indexes for queryability
CREATE INDEX IF NOT EXISTS idx_object_class
    ON object_state (class_mod, class_name);
CREATE INDEX IF NOT EXISTS idx_object_refs
    ON object_state USING gin (refs);
CREATE INDEX IF NOT EXISTS idx_object_state_tid_zoid
    ON object_state (tid, zoid);

-- Invalidation trigger
CREATE OR REPLACE FUNCTION notify_commit() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('zodb_invalidations', NEW.tid::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trg_notify_commit ON transaction_log;
CREATE TRIGGER trg_notify_commit
    AFTER INSERT ON transaction_log
    FOR EACH ROW EXECUTE FUNCTION notify_commit();
-- @section hp
CREATE TABLE IF NOT EXISTS object_history (
    zoid        BIGINT NOT NULL,
    tid         BIGINT NOT NULL,
    class_mod   TEXT NOT NULL,
    class_name  TEXT NOT NULL,
    state       JSONB,
    state_size  INTEGER NOT NULL,
    refs        BIGINT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (zoid, tid)
);

CREATE INDEX IF NOT EXISTS idx_history_tid
    ON object_history (tid);
CREATE INDEX IF NOT EXISTS idx_history_zoid_tid
    ON object_history (zoid, tid DESC);

CREATE TABLE IF NOT EXISTS pack_state (
    zoid        BIGINT PRIMARY KEY,
    tid         BIGINT NOT NULL
);
-- @section lz4
ALTER TABLE object_state ALTER COLUMN state SET COMPRESSION lz4;
ALTER TABLE blob_state ALTER COLUMN data SET COMPRESSION lz4;
-- @section lz4-hp
ALTER TABLE object_history ALTER COLUMN state SET COMPRESSION lz4;
-- @section open
CREATE SEQUENCE zoid_seq START WITH 1;
CREATE TABLE IF NOT EXISTS pgjsonb_schema_state (
    source     text PRIMARY KEY,
    version    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cache_warm_stats (
    zoid   BIGINT PRIMARY KEY,
    score  FLOAT NOT NULL DEFAULT 1.0
);
