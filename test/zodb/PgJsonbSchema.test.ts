// The zodb-pgjsonb destination schema, against the real PostgreSQL as the ordinary role that owns the
// database: what PgJsonbSchema.ensure creates equals, catalog entry for catalog entry, what
// zodb-pgjsonb 1.14's own DDL text creates (test/data/zodb-pgjsonb-schema-1.14.sql, applied in a second
// database); an existing schema is accepted in its mode only, repaired as zodb-pgjsonb repairs it, and
// refused naming each difference; RelStorage's object_state is refused.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { SqlClient } from "effect/sql"
import * as Catalog from "../../src/zodb/destination/Catalog.ts"
import * as PgJsonbSchema from "../../src/zodb/destination/PgJsonbSchema.ts"
import { applyReference, inFreshDb, referenceSections } from "./PgJsonbSchemaSupport.ts"

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${String(exit.value)}`)
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (reason === undefined || reason._tag !== "Fail") throw new Error(`expected a typed failure: ${String(exit.cause)}`)
  return reason.error
}

const column = (snap: Catalog.Snapshot, table: string, name: string) => snap.tables[table]?.columns.find((c) => c.name === name)

describe("PgJsonbSchema", () => {
  for (const hp of [false, true]) {
    const mode = hp ? "history-preserving" : "history-free"
    it.live(`${mode}: ensure creates exactly zodb-pgjsonb's schema, as an ordinary role`, () =>
      inFreshDb(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [role] = yield* sql<{ su: boolean; owner: boolean }>`SELECT r.rolsuper AS su,
          (SELECT d.datdba = r.oid FROM pg_database d WHERE d.datname = current_database()) AS owner
          FROM pg_roles r WHERE r.rolname = current_user`
        assert.isFalse(role!.su)
        assert.isTrue(role!.owner)
        assert.strictEqual((yield* PgJsonbSchema.inspect(sql))._tag, "Empty")

        const ensured = yield* PgJsonbSchema.ensure(sql, { historyPreserving: hp })
        assert.isTrue(ensured.created)
        assert.strictEqual(ensured.inspection.historyPreserving, hp)
        assert.isFalse(ensured.inspection.hasData)
        const ours = yield* Catalog.snapshot(sql)
        const lz4 = yield* PgJsonbSchema.lz4Available(sql)

        const theirs = yield* inFreshDb(Effect.gen(function*() {
          yield* applyReference(hp, lz4)
          return yield* Catalog.snapshot(yield* SqlClient.SqlClient)
        }))
        // the whole catalog, sequence start included: tables, columns (type, NOT NULL, default,
        // compression), constraints, indexes, triggers, sequences, functions
        assert.deepStrictEqual(ours, theirs)
        assert.deepStrictEqual(Catalog.diff(theirs, ours, { sequenceStart: true, compression: true }), [])

        // and the facts the writer relies on, spelled out
        assert.deepStrictEqual(Object.keys(ours.tables).sort(), [
          "blob_state", "cache_warm_stats", "object_state", "pgjsonb_schema_state", "transaction_log",
          ...(hp ? ["object_history", "pack_state"] : [])
        ].sort())
        assert.deepStrictEqual(ours.tables["transaction_log"]!.columns.map((c) => [c.name, c.type, c.default]), [
          ["tid", "bigint", null],
          ["username", "text", "''::text"],
          ["description", "text", "''::text"],
          ["extension", "bytea", "'\\x'::bytea"]
        ])
        assert.deepStrictEqual(ours.tables["object_state"]!.columns.map((c) => [c.name, c.type, c.notNull]), [
          ["zoid", "bigint", true], ["tid", "bigint", true], ["class_mod", "text", true], ["class_name", "text", true],
          ["state", "jsonb", false], ["state_size", "integer", true], ["refs", "bigint[]", true]
        ])
        assert.strictEqual(ours.tables["object_state"]!.constraints["object_state_tid_fkey"], "FOREIGN KEY (tid) REFERENCES transaction_log(tid)")
        assert.deepStrictEqual(ours.tables["blob_state"]!.columns.map((c) => [c.name, c.type, c.notNull]), [
          ["zoid", "bigint", true], ["tid", "bigint", true], ["blob_size", "bigint", true], ["data", "bytea", false], ["s3_key", "text", false]
        ])
        assert.deepStrictEqual(Object.keys(ours.tables["object_state"]!.indexes).sort(), [
          "idx_object_class", "idx_object_refs", "idx_object_state_tid_zoid", "object_state_pkey"
        ])
        assert.include(ours.tables["object_state"]!.indexes["idx_object_refs"]!, "USING gin (refs)")
        assert.strictEqual(
          ours.tables["transaction_log"]!.triggers["trg_notify_commit"],
          "CREATE TRIGGER trg_notify_commit AFTER INSERT ON transaction_log FOR EACH ROW EXECUTE FUNCTION notify_commit()"
        )
        assert.include(ours.functions["notify_commit"]!.source, "pg_notify('zodb_invalidations', NEW.tid::text)")
        assert.strictEqual(ours.sequences["zoid_seq"]!.start, "1")
        if (hp) {
          assert.include(ours.tables["object_history"]!.indexes["idx_history_zoid_tid"]!, "(zoid, tid DESC)")
          assert.deepStrictEqual(column(ours, "pack_state", "tid")?.type, "bigint")
        }
        if (lz4) assert.strictEqual(column(ours, "object_state", "state")!.compression, "l")

        // nothing of the scratch schema the check builds is left
        const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'zodb_convert_expected%'`
        assert.strictEqual(left!.n, 0)
        // a second ensure accepts it as is
        const again = yield* PgJsonbSchema.ensure(sql, { historyPreserving: hp })
        assert.isFalse(again.created)
        assert.deepStrictEqual(again.repaired, [])
      })))

    it.live(`${mode}: a schema made by zodb-pgjsonb's DDL is accepted; the other mode is refused`, () =>
      inFreshDb(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* applyReference(hp, yield* PgJsonbSchema.lz4Available(sql))
        const ok = yield* PgJsonbSchema.ensure(sql, { historyPreserving: hp })
        assert.isFalse(ok.created)
        assert.deepStrictEqual(ok.repaired, [])
        const e = failureOf(yield* Effect.exit(PgJsonbSchema.ensure(sql, { historyPreserving: !hp })))
        assert.strictEqual(e._tag, "DestinationSchemaMismatch")
        assert.include(e.message, hp ? "the destination is history-preserving" : "the destination is history-free")
      })))
  }

  it.live("an older zodb-pgjsonb schema is completed as zodb-pgjsonb completes it when it opens it", () =>
    inFreshDb(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // schema version 1: no tid/zoid index, no sequence, no marker tables, pglz
      for (const s of referenceSections()["hf"]!.filter((s) => !s.includes("idx_object_state_tid_zoid"))) yield* sql.unsafe(s)
      yield* sql`INSERT INTO transaction_log (tid) VALUES (5)`
      yield* sql`INSERT INTO object_state (zoid, tid, class_mod, class_name, state, state_size) VALUES (41, 5, 'm', 'C', '{}', 2)`
      const ensured = yield* PgJsonbSchema.ensure(sql, { historyPreserving: false })
      const lz4 = yield* PgJsonbSchema.lz4Available(sql)
      assert.deepStrictEqual(ensured.repaired, [
        "create index idx_object_state_tid_zoid",
        ...(lz4 ? ["set compression lz4 on object_state.state", "set compression lz4 on blob_state.data"] : []),
        "create sequence zoid_seq",
        "create table pgjsonb_schema_state",
        "create table cache_warm_stats"
      ])
      assert.isTrue(ensured.inspection.hasData)
      assert.strictEqual(ensured.inspection.lastTid, 5n)
      // zodb-pgjsonb's _ensure_zoid_seq: START WITH max(zoid) + 1
      const [seq] = yield* sql<{ v: bigint }>`SELECT nextval('zoid_seq') AS v`
      assert.strictEqual(seq!.v, 42n)
    })))

  it.live("a schema that differs from zodb-pgjsonb's is refused, naming each difference", () =>
    inFreshDb(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* PgJsonbSchema.ensure(sql, { historyPreserving: false })
      yield* sql`DROP INDEX idx_object_class`
      yield* sql`ALTER TABLE transaction_log ALTER COLUMN username TYPE varchar(50)`
      yield* sql`ALTER TABLE object_state ADD COLUMN path text NOT NULL`
      yield* sql`ALTER TABLE object_state ADD COLUMN idx jsonb`
      const e = failureOf(yield* Effect.exit(PgJsonbSchema.ensure(sql, { historyPreserving: false })))
      assert.strictEqual(e._tag, "DestinationSchemaMismatch")
      if (e._tag !== "DestinationSchemaMismatch") return
      assert.deepStrictEqual([...e.differences].sort(), [
        "column object_state.path (path text NOT NULL) is not zodb-pgjsonb's and has no default",
        "column transaction_log.username is username character varying(50) DEFAULT ''::text, expected username text DEFAULT ''::text",
        "index idx_object_class on object_state is missing (expected CREATE INDEX idx_object_class ON object_state USING btree (class_mod, class_name))"
      ])
      assert.include(e.message, "does not match zodb-pgjsonb 1.14's history-free schema")
      // a nullable extra column (a state processor's, e.g. plone-pgcatalog's) alone is fine, and reported
      yield* sql`ALTER TABLE object_state DROP COLUMN path`
      yield* sql`ALTER TABLE transaction_log ALTER COLUMN username TYPE text`
      yield* sql`CREATE INDEX idx_object_class ON object_state (class_mod, class_name)`
      const ok = yield* PgJsonbSchema.ensure(sql, { historyPreserving: false })
      assert.deepStrictEqual(ok.inspection.extraColumns, ["idx"])
    })))

  for (const layout of ["history-preserving", "history-free"] as const) {
    it.live(`RelStorage's ${layout} object_state is refused with a clear message`, () =>
      inFreshDb(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        // RelStorage's PostgreSQL schema (relstorage/adapters/postgresql/schema.py)
        if (layout === "history-preserving") {
          yield* sql`CREATE TABLE transaction (tid BIGINT NOT NULL PRIMARY KEY, packed BOOLEAN NOT NULL DEFAULT FALSE,
            is_empty BOOLEAN NOT NULL DEFAULT FALSE, username BYTEA NOT NULL, description BYTEA NOT NULL, extension BYTEA)`
          yield* sql`CREATE TABLE object_state (zoid BIGINT NOT NULL, tid BIGINT NOT NULL REFERENCES transaction,
            prev_tid BIGINT NOT NULL REFERENCES transaction, md5 CHAR(32), state_size BIGINT NOT NULL, state BYTEA,
            PRIMARY KEY (zoid, tid))`
        } else {
          yield* sql`CREATE TABLE object_state (zoid BIGINT NOT NULL PRIMARY KEY, tid BIGINT NOT NULL,
            state_size BIGINT NOT NULL, state BYTEA NOT NULL)`
        }
        for (const hp of [false, true]) {
          const e = failureOf(yield* Effect.exit(PgJsonbSchema.ensure(sql, { historyPreserving: hp })))
          assert.strictEqual(e._tag, "DestinationNotPgJsonb")
          assert.include(e.message, "object_state is not zodb-pgjsonb's")
          assert.include(e.message, "RelStorage's object_state")
          assert.include(e.message, layout === "history-preserving" ? "prev_tid bigint, md5 character(32)" : "state bytea")
        }
        // nothing was created
        const [n] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('transaction_log', 'blob_state', 'zoid_seq')`
        assert.strictEqual(n!.n, 0)
      })))
  }

  it.live("a blob_state without transaction_log (lo-migrate's relstorage profile) is refused", () =>
    inFreshDb(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE blob_state (zoid bigint NOT NULL, tid bigint NOT NULL, blob_size bigint NOT NULL,
        data bytea, s3_key text, PRIMARY KEY (zoid, tid))`
      const e = failureOf(yield* Effect.exit(PgJsonbSchema.ensure(sql, { historyPreserving: false })))
      assert.strictEqual(e._tag, "DestinationNotPgJsonb")
      assert.include(e.message, "blob_state exists without transaction_log")
    })))

  it.live("unrelated tables do not make a destination non-empty", () =>
    inFreshDb(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE app_settings (k text PRIMARY KEY, v text)`
      assert.strictEqual((yield* PgJsonbSchema.inspect(sql))._tag, "Empty")
      assert.isTrue((yield* PgJsonbSchema.ensure(sql, { historyPreserving: false })).created)
    })))

  it("splitStatements keeps $$ bodies, strings and comments whole", () => {
    const parts = PgJsonbSchema.splitStatements(`-- c; x
      SELECT 'a;b' AS "x;y"; /* ; */ CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
      -- trailing; comment
    `)
    assert.deepStrictEqual(parts, [`SELECT 'a;b' AS "x;y"`, `/* ; */ CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql`])
    assert.strictEqual(PgJsonbSchema.splitStatements(PgJsonbSchema.HISTORY_FREE_SCHEMA).length, 9)
    assert.deepStrictEqual(
      PgJsonbSchema.creationStatements(true, true).map((s) => s.replace(/\s+/g, " ")).sort(),
      ["hf", "hp", "lz4", "lz4-hp", "open"].flatMap((k) => referenceSections()[k]!)
        .map((s) => s.replace(/--[^\n]*\n/g, "").replace(/\s+/g, " ").trim().replace(/;$/, "")).sort()
    )
  })
})
