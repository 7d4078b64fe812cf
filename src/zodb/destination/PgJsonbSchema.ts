/**
 * The destination's schema: zodb-pgjsonb 1.14 as its own code creates it (bluedynamics/zodb-pgjsonb
 * v1.14.2, 844e61e; see docs/zodb-pgjsonb-destination.md), history-free or history-preserving.
 *
 * - `inspect`: what the destination holds: nothing of zodb-pgjsonb's (`Empty`), a zodb-pgjsonb schema
 *   (`PgJsonb`, its mode, whether it has transactions), or tables of someone else (RelStorage's
 *   `object_state`, a `blob_state` without `transaction_log`): `DestinationNotPgJsonb`.
 * - `ensure`: creates the schema in an empty destination (one transaction, by the owner, no superuser),
 *   or checks an existing one: same mode, and every table, column, constraint, index, trigger, function
 *   and sequence as zodb-pgjsonb's DDL makes them on this server (`DestinationSchemaMismatch` naming each
 *   difference). What zodb-pgjsonb itself adds to an older schema when it opens it (the tid/zoid index,
 *   zoid_seq, the two small tables, lz4) is added the same way.
 * - `finalize`: the post-copy step: zoid_seq past every oid written, the copy's tombstones out of
 *   object_state, history-preserving: object_history without the current revisions (as zodb-pgjsonb's
 *   `compact_history()`), the watermark table dropped, ANALYZE.
 *
 * The DDL is zodb-pgjsonb's text, verbatim. The driver speaks the extended protocol (one statement per
 * message), so each string is split into its statements (`splitStatements`).
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, type TableBusy } from "../../domain/Errors.ts"
import { alter } from "../../postgres/Ddl.ts"
import { transaction } from "../../postgres/Transaction.ts"
import * as Catalog from "./Catalog.ts"
import { DestinationNotPgJsonb, DestinationSchemaMismatch } from "./Errors.ts"

/** The zodb-pgjsonb release whose schema this is, and its schema.py SCHEMA_VERSION. */
export const pgjsonbVersion = "1.14.2"
export const pgjsonbSchemaVersion = 2

// ---- zodb-pgjsonb's DDL, verbatim (src/zodb_pgjsonb/schema.py @ 844e61e) ------------------------------

/** schema.py:9-59 HISTORY_FREE_SCHEMA */
export const HISTORY_FREE_SCHEMA = `\
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
`

/** schema.py:65-86 HISTORY_PRESERVING_ADDITIONS */
export const HISTORY_PRESERVING_ADDITIONS = `\
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
`

/** schema.py:130-136 SCHEMA_STATE_TABLE */
export const SCHEMA_STATE_TABLE = `\
CREATE TABLE IF NOT EXISTS pgjsonb_schema_state (
    source     text PRIMARY KEY,
    version    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
`

/** cache_warmer.py:22-27 WARM_STATS_DDL, run by PGJsonbStorage.__init__ (storage.py:572) with the default cache-warm-pct */
export const WARM_STATS_DDL = `\
CREATE TABLE IF NOT EXISTS cache_warm_stats (
    zoid   BIGINT PRIMARY KEY,
    score  FLOAT NOT NULL DEFAULT 1.0
);
`

/** schema.py:99-103: the columns `_set_lz4_compression` moves to lz4 (PG 14+, when the server has it) */
export const lz4Columns = [["object_state", "state"], ["object_history", "state"], ["blob_state", "data"]] as const

/** schema.py:175 `_ensure_zoid_seq`: created after MAX(zoid) of object_state */
export const createZoidSeq = (start: bigint) => `CREATE SEQUENCE zoid_seq START WITH ${start}`

/**
 * Splits an SQL script into its statements at top-level semicolons, leaving out comment-only pieces:
 * it knows '...' strings, "..." identifiers, $tag$...$tag$ bodies, -- and /* *\/ comments (enough for
 * the DDL above and the reference file of the tests; no E'' escapes, no nested comments).
 */
export const splitStatements = (script: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  let start = 0
  let i = 0
  let meaningful = false
  const n = script.length
  while (i < n) {
    const c = script[i]!
    if (c === "-" && script[i + 1] === "-") {
      const end = script.indexOf("\n", i)
      i = end === -1 ? n : end + 1
      continue
    }
    if (c === "/" && script[i + 1] === "*") {
      const end = script.indexOf("*/", i + 2)
      i = end === -1 ? n : end + 2
      continue
    }
    if (c === "'" || c === "\"") {
      meaningful = true
      let j = i + 1
      while (j < n) {
        if (script[j] === c) {
          if (script[j + 1] === c) j += 2
          else break
        } else j++
      }
      i = j + 1
      continue
    }
    if (c === "$") {
      const m = /^\$[A-Za-z_]*\$/.exec(script.slice(i, i + 64))
      if (m !== null) {
        meaningful = true
        const end = script.indexOf(m[0], i + m[0].length)
        i = end === -1 ? n : end + m[0].length
        continue
      }
    }
    if (c === ";") {
      if (meaningful) out.push(stripComments(script.slice(start, i)).trim())
      start = i + 1
      meaningful = false
      i++
      continue
    }
    if (!/\s/.test(c)) meaningful = true
    i++
  }
  if (meaningful) out.push(stripComments(script.slice(start)).trim())
  return out.filter((s) => s !== "")
}

// leading comment lines of a piece (the statement itself keeps its text)
const stripComments = (piece: string) => piece.replace(/^(\s*--[^\n]*\n)+/, "")

// ---- inspection ----------------------------------------------------------------------------------------

export type Inspection =
  | { readonly _tag: "Empty"; readonly where: string }
  | {
    readonly _tag: "PgJsonb"
    readonly where: string
    readonly historyPreserving: boolean
    /** transaction_log has rows */
    readonly hasData: boolean
    /** MAX(tid) of transaction_log */
    readonly lastTid: bigint | undefined
    /** object_state columns that are not zodb-pgjsonb's (a state processor's, e.g. plone-pgcatalog's): left NULL by the copy */
    readonly extraColumns: ReadonlyArray<string>
    /** the copy's watermark table exists: a copy started and was not finalized (its tombstones may be in object_state) */
    readonly copyInProgress: boolean
  }

/** zodb-pgjsonb's tables that hold data: any of them without transaction_log is not its schema */
const dataTables = ["transaction_log", "object_state", "blob_state", "object_history", "pack_state"] as const

const columnsOf = (t: Catalog.Table | undefined) => new Map((t?.columns ?? []).map((c) => [c.name, c.type]))

const listColumns = (t: Catalog.Table) => t.columns.map((c) => `${c.name} ${c.type}`).join(", ")

const where = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql.unsafe<{ db: string; schema: string }>(`SELECT current_database()::text AS db, current_schema()::text AS schema`),
    ([r]) => `database ${r?.db ?? "?"} schema ${r?.schema ?? "?"}`
  )

const dbError = (operation: string) => (cause: SqlError.SqlError) => new DatabaseError({ operation, cause })

/** Reads what the destination holds (see `Inspection`); refuses tables that are not zodb-pgjsonb's. */
export const inspect = (
  sql: SqlClient.SqlClient
): Effect.Effect<Inspection, DestinationNotPgJsonb | DatabaseError> =>
  Effect.gen(function*() {
    const at = yield* where(sql)
    const snap = yield* Catalog.snapshot(sql)
    return yield* classify(sql, at, snap)
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError("inspect the destination schema")(e))))

const classify = (sql: SqlClient.SqlClient, at: string, snap: Catalog.Snapshot) =>
  Effect.gen(function*() {
    const os = snap.tables["object_state"]
    if (os !== undefined) {
      const cols = columnsOf(os)
      const relstorage = cols.has("prev_tid") || cols.has("md5") || cols.get("state") === "bytea"
      const lacks = ["class_mod", "class_name", "refs"].filter((c) => !cols.has(c))
      if (relstorage || lacks.length > 0 || cols.get("state") !== "jsonb") {
        return yield* new DestinationNotPgJsonb({
          where: at,
          table: "object_state",
          found: `columns ${listColumns(os)}`,
          problem: relstorage
            ? "this is RelStorage's object_state (pickles in a bytea state column), not zodb-pgjsonb's (class_mod, class_name, state jsonb, refs)"
            : `it lacks ${lacks.length > 0 ? lacks.join(", ") : "a jsonb state column"}`
        })
      }
    }
    const tl = snap.tables["transaction_log"]
    if (tl === undefined) {
      const present = dataTables.filter((t) => snap.tables[t] !== undefined)
      if (present.length === 0) return { _tag: "Empty", where: at } as const
      const first = present[0]!
      return yield* new DestinationNotPgJsonb({
        where: at,
        table: first,
        found: `columns ${listColumns(snap.tables[first]!)}`,
        problem: `${present.join(", ")} exist${present.length === 1 ? "s" : ""} without transaction_log`
      })
    }
    const tlCols = columnsOf(tl)
    const tlLacks = ["tid", "username", "description", "extension"].filter((c) => !tlCols.has(c))
    if (tlLacks.length > 0) {
      return yield* new DestinationNotPgJsonb({
        where: at,
        table: "transaction_log",
        found: `columns ${listColumns(tl)}`,
        problem: `it lacks ${tlLacks.join(", ")}`
      })
    }
    const [r] = yield* sql.unsafe<{ last: string | null }>(`SELECT max(tid)::text AS last FROM transaction_log`)
    const own = new Set(["zoid", "tid", "class_mod", "class_name", "state", "state_size", "refs"])
    return {
      _tag: "PgJsonb",
      where: at,
      historyPreserving: snap.tables["object_history"] !== undefined,
      hasData: r?.last !== null && r?.last !== undefined,
      lastTid: r?.last === null || r?.last === undefined ? undefined : BigInt(r.last),
      extraColumns: (os?.columns ?? []).filter((c) => !own.has(c.name)).map((c) => c.name),
      copyInProgress: snap.tables[watermarkTable] !== undefined
    } as const
  })

// ---- creation --------------------------------------------------------------------------------------------

/** Whether the server can store TOAST values with lz4 (built --with-lz4). */
export const lz4Available = (sql: SqlClient.SqlClient): Effect.Effect<boolean, SqlError.SqlError> =>
  Effect.map(
    sql.unsafe<{ ok: boolean }>(
      `SELECT coalesce('lz4' = ANY(enumvals), false) AS ok FROM pg_catalog.pg_settings WHERE name = 'default_toast_compression'`
    ),
    ([r]) => r?.ok === true
  )

/**
 * The statements zodb-pgjsonb runs on an empty database (install_schema, schema.py:194-236, then
 * PGJsonbStorage.__init__'s cache_warm_stats, storage.py:569-572), in its order.
 */
export const creationStatements = (historyPreserving: boolean, lz4: boolean): ReadonlyArray<string> => [
  ...splitStatements(HISTORY_FREE_SCHEMA),
  ...(historyPreserving ? splitStatements(HISTORY_PRESERVING_ADDITIONS) : []),
  ...(lz4
    ? lz4Columns.filter(([t]) => historyPreserving || t !== "object_history").map(([t, c]) =>
      `ALTER TABLE ${t} ALTER COLUMN ${c} SET COMPRESSION lz4`
    )
    : []),
  createZoidSeq(1n),
  ...splitStatements(SCHEMA_STATE_TABLE),
  ...splitStatements(WARM_STATS_DDL)
]

/** The namespace of the advisory lock that serializes schema creation between processes. */
const lockKeys = ["zodb-convert", "pgjsonb-schema"] as const

class Rollback<A> {
  constructor(readonly value: A) {}
}

/**
 * The catalog zodb-pgjsonb's DDL gives on this server: the statements run in a scratch schema inside a
 * transaction that is rolled back, so nothing stays (needs CREATE on the database, which its owner has).
 */
export const expectedSnapshot = (
  sql: SqlClient.SqlClient,
  historyPreserving: boolean
): Effect.Effect<Catalog.Snapshot, SqlError.SqlError> =>
  Effect.gen(function*() {
    const lz4 = yield* lz4Available(sql)
    const scratch = `zodb_convert_expected_${Math.random().toString(36).slice(2, 10)}`
    return yield* transaction(sql, Effect.gen(function*() {
      yield* sql.unsafe(`CREATE SCHEMA ${scratch}`)
      yield* sql.unsafe(`SET LOCAL search_path = ${scratch}`)
      for (const s of creationStatements(historyPreserving, lz4)) yield* sql.unsafe(s)
      const snap = yield* Catalog.snapshot(sql, scratch)
      return yield* Effect.fail(new Rollback({ ...snap, schema: "expected" }))
    })).pipe(
      Effect.catch((e) => e instanceof Rollback ? Effect.succeed(e.value as Catalog.Snapshot) : Effect.fail(e as SqlError.SqlError))
    )
  })

export interface Ensured {
  /** the schema was created by this call */
  readonly created: boolean
  /** objects added to an existing schema, as zodb-pgjsonb adds them when it opens one */
  readonly repaired: ReadonlyArray<string>
  readonly inspection: Extract<Inspection, { _tag: "PgJsonb" }>
}

/**
 * Makes the destination a zodb-pgjsonb schema of the given mode: creates it when empty, otherwise checks
 * it (see the module comment). Safe against a concurrent twin (an advisory lock around the creation).
 */
export const ensure = (
  sql: SqlClient.SqlClient,
  options: { readonly historyPreserving: boolean }
): Effect.Effect<Ensured, DestinationNotPgJsonb | DestinationSchemaMismatch | TableBusy | DatabaseError> =>
  Effect.gen(function*() {
    const hp = options.historyPreserving
    const first = yield* inspect(sql)
    let created = false
    if (first._tag === "Empty") {
      const lz4 = yield* lz4Available(sql).pipe(Effect.mapError(dbError("check lz4 support")))
      created = yield* transaction(sql, Effect.gen(function*() {
        yield* sql.unsafe(`SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, [...lockKeys])
        // a twin may have created it while this one waited for the lock
        const again = yield* classify(sql, first.where, yield* Catalog.snapshot(sql))
        if (again._tag !== "Empty") return false
        for (const s of creationStatements(hp, lz4)) yield* sql.unsafe(s)
        return true
      })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError("create the zodb-pgjsonb schema")(e))))
    }
    const found = yield* inspect(sql)
    if (found._tag === "Empty") {
      return yield* new DestinationSchemaMismatch({ where: found.where, historyPreserving: hp, differences: ["the schema was not created"] })
    }
    if (found.historyPreserving !== hp) {
      return yield* new DestinationSchemaMismatch({
        where: found.where,
        historyPreserving: hp,
        otherMode: true,
        differences: [
          found.historyPreserving
            ? "the destination is history-preserving (it has object_history), this copy is history-free"
            : "the destination is history-free (it has no object_history), this copy is history-preserving"
        ]
      })
    }
    const repaired = created ? [] : yield* repair(sql, hp)
    const expected = yield* expectedSnapshot(sql, hp).pipe(Effect.mapError(dbError("build the expected schema")))
    const actual = yield* Catalog.snapshot(sql).pipe(Effect.mapError(dbError("read the destination schema")))
    const differences = Catalog.diff(expected, actual, { compression: true })
    if (differences.length > 0) {
      return yield* new DestinationSchemaMismatch({ where: found.where, historyPreserving: hp, differences })
    }
    return { created, repaired, inspection: found }
  })

/**
 * What zodb-pgjsonb does to an existing schema when it opens it (schema.py:209-236, storage.py:572):
 * the tid/zoid index, lz4 on the state and data columns, zoid_seq, pgjsonb_schema_state, cache_warm_stats.
 * Only what is missing is done, each with a bounded lock wait (Ddl.alter).
 */
const repair = (sql: SqlClient.SqlClient, hp: boolean) =>
  Effect.gen(function*() {
    const snap = yield* Catalog.snapshot(sql).pipe(Effect.mapError(dbError("read the destination schema")))
    const lz4 = yield* lz4Available(sql).pipe(Effect.mapError(dbError("check lz4 support")))
    const done: Array<string> = []
    const run = (relation: string, what: string, statements: ReadonlyArray<string>) =>
      alter(sql, { relation, shown: relation, what, statements }).pipe(
        Effect.catchTag("SqlError", (e) => Effect.fail(dbError(what)(e))),
        Effect.tap(() => Effect.sync(() => done.push(what)))
      )
    if (snap.tables["object_state"]?.indexes["idx_object_state_tid_zoid"] === undefined) {
      yield* run("object_state", "create index idx_object_state_tid_zoid", [
        "CREATE INDEX IF NOT EXISTS idx_object_state_tid_zoid ON object_state (tid, zoid)"
      ])
    }
    if (lz4) {
      for (const [t, c] of lz4Columns) {
        if (!hp && t === "object_history") continue
        const col = snap.tables[t]?.columns.find((x) => x.name === c)
        if (col !== undefined && col.compression !== "l") {
          yield* run(t, `set compression lz4 on ${t}.${c}`, [`ALTER TABLE ${t} ALTER COLUMN ${c} SET COMPRESSION lz4`])
        }
      }
    }
    if (snap.sequences["zoid_seq"] === undefined) {
      const [r] = yield* sql.unsafe<{ m: string }>(`SELECT coalesce(max(zoid), 0)::text AS m FROM object_state`).pipe(
        Effect.mapError(dbError("read max(zoid)"))
      )
      yield* run("object_state", "create sequence zoid_seq", [createZoidSeq(BigInt(r?.m ?? "0") + 1n)])
    }
    if (snap.tables["pgjsonb_schema_state"] === undefined) {
      yield* run("pgjsonb_schema_state", "create table pgjsonb_schema_state", splitStatements(SCHEMA_STATE_TABLE))
    }
    if (snap.tables["cache_warm_stats"] === undefined) {
      yield* run("cache_warm_stats", "create table cache_warm_stats", splitStatements(WARM_STATS_DDL))
    }
    return done
  })

// ---- after the copy ---------------------------------------------------------------------------------------

/** The copy's own resume table (see PgJsonbWriter); dropped by `finalize`. */
export const watermarkTable = "zodb_convert_watermark"
/**
 * Background blobs: transactions whose rows are committed but whose S3 uploads are not confirmed yet
 * (their S3 blob_state rows are written when they are); such a transaction is not done, and a resumed
 * copy does it again. Dropped by finalize, which runs only when it is empty.
 */
export const pendingTable = "zodb_convert_pending"

export interface Finalized {
  /** zoid_seq's next value, when it was moved */
  readonly sequenceSetTo: bigint | undefined
  /** deletion tombstones removed from object_state */
  readonly tombstones: number
  /** history-preserving: object_history rows that were the current revision (now only in object_state) */
  readonly compacted: number
}

/**
 * The post-copy step, in one transaction (ANALYZE after it):
 * 1. zoid_seq moves past the highest oid written (object_state with its tombstones, and object_history):
 *    zodb-pgjsonb allocates new oids with nextval('zoid_seq') (storage.py:668-681). Only moved forward,
 *    as `_ensure_zoid_seq` does (schema.py:176-182). Oids >= 2^63 (negative as bigint) are not counted.
 * 2. The copy's deletion tombstones (object_state rows with state NULL, see PgJsonbWriter) are deleted:
 *    zodb-pgjsonb has no such rows (a deleted object has no object_state row).
 * 3. History-preserving: object_history rows equal (zoid, tid) to an object_state row are deleted, so
 *    object_history holds the previous revisions only, as zodb-pgjsonb's copy-before-overwrite writes
 *    it (batch.py:86-96) and its `compact_history()` (storage.py:1658-1699) leaves it.
 * 4. The watermark table is dropped.
 * `sinceTid` limits 2 and 3 to rows of transactions >= it (an incremental run after a finished copy:
 * the earlier ones were finalized before; never for the resume of an unfinished copy, whose
 * transactions below the watermark still hold their tombstones).
 */
export const finalize = (
  sql: SqlClient.SqlClient,
  options: { readonly historyPreserving: boolean; readonly sinceTid?: bigint | undefined }
): Effect.Effect<Finalized, DatabaseError> =>
  Effect.gen(function*() {
    const since = options.sinceTid
    const result = yield* transaction(sql, Effect.gen(function*() {
      const maxOf = options.historyPreserving
        ? `SELECT greatest((SELECT max(zoid) FROM object_state), (SELECT max(zoid) FROM object_history)) AS m`
        : `SELECT (SELECT max(zoid) FROM object_state) AS m`
      const [seq] = yield* sql.unsafe<{ next: string | null }>(
        `SELECT setval('zoid_seq', x.m + 1, false)::text AS next
         FROM (${maxOf}) x, zoid_seq s WHERE x.m IS NOT NULL AND s.last_value <= x.m`
      )
      const sinceClause = (col: string) => (since === undefined ? "" : ` AND ${col} >= $1`)
      const params = since === undefined ? [] : [since]
      const dead = yield* sql.unsafe<{ n: number }>(
        `WITH d AS (DELETE FROM object_state WHERE state IS NULL${sinceClause("tid")} RETURNING 1)
         SELECT count(*)::int AS n FROM d`,
        params
      )
      const compacted = options.historyPreserving
        ? yield* sql.unsafe<{ n: number }>(
          `WITH d AS (DELETE FROM object_history h USING object_state s
             WHERE h.zoid = s.zoid AND h.tid = s.tid${sinceClause("s.tid")} RETURNING 1)
           SELECT count(*)::int AS n FROM d`,
          params
        )
        : [{ n: 0 }]
      yield* sql.unsafe(`DROP TABLE IF EXISTS ${watermarkTable}`)
      yield* sql.unsafe(`DROP TABLE IF EXISTS ${pendingTable}`)
      return {
        sequenceSetTo: seq?.next === null || seq?.next === undefined ? undefined : BigInt(seq.next),
        tombstones: dead[0]?.n ?? 0,
        compacted: compacted[0]?.n ?? 0
      }
    }))
    yield* sql.unsafe(
      `ANALYZE transaction_log, object_state, blob_state${options.historyPreserving ? ", object_history" : ""}`
    )
    return result
  }).pipe(Effect.mapError((cause) => new DatabaseError({ operation: "finalize the zodb-pgjsonb destination", cause })))
