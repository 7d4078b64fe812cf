// PgJsonbWriter against the real PostgreSQL as the ordinary owner role: what one commit writes (column
// types, signed oids, blobs, text), replays, out-of-order and concurrent commits (a fast-check property
// comparing every table with zodb-pgjsonb's own in-order write path, batch.py's statements), deletion
// semantics in both modes, resume queries, the watermark and the post-copy step.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import { TestDatabase } from "../support/Postgres.ts"
import {
  blobS3Key,
  hasNulEscape,
  isRetryable,
  make,
  type PgJsonbRecord,
  type PgJsonbTransaction,
  type PgJsonbWriterShape,
  type WriterOptions
} from "../../src/zodb/destination/PgJsonbWriter.ts"
import * as PgJsonbSchema from "../../src/zodb/destination/PgJsonbSchema.ts"
import { dumpTables, inFreshDb } from "./PgJsonbSchemaSupport.ts"

const utf8 = (s: string) => new TextEncoder().encode(s)
const empty = new Uint8Array(0)

const tx = (tid: bigint, records: ReadonlyArray<PgJsonbRecord>, meta: Partial<Pick<PgJsonbTransaction, "user" | "description" | "extension">> = {}): PgJsonbTransaction => ({
  tid,
  user: meta.user ?? utf8("admin"),
  description: meta.description ?? utf8(`tx ${tid}`),
  extension: meta.extension ?? empty,
  records
})
const obj = (zoid: bigint, state: unknown, refs: ReadonlyArray<bigint> = [], extra: Partial<PgJsonbRecord> = {}): PgJsonbRecord => ({
  zoid,
  classMod: "persistent.mapping",
  className: "PersistentMapping",
  stateJson: JSON.stringify(state),
  stateSize: 10 + JSON.stringify(state).length,
  refs,
  ...extra
})
const gone = (zoid: bigint): PgJsonbRecord => ({ zoid, classMod: null, className: null, stateJson: null, stateSize: 0, refs: [] })

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (reason === undefined || reason._tag !== "Fail") throw new Error(`expected a typed failure: ${String(exit.cause)}`)
  return reason.error
}

/** A writer on a fresh database. */
const withWriter = <A, E>(options: WriterOptions, f: (w: PgJsonbWriterShape, sql: SqlClient.SqlClient) => Effect.Effect<A, E, SqlClient.SqlClient>) =>
  inFreshDb(Effect.gen(function*() {
    const w = yield* make(options)
    return yield* f(w, yield* SqlClient.SqlClient)
  }))

describe("PgJsonbWriter: one commit", () => {
  it.live("writes transaction_log, object_state (signed refs) and blob_state as zodb-pgjsonb does", () =>
    withWriter({ historyPreserving: false }, (w, sql) =>
      Effect.gen(function*() {
        const high = (1n << 64n) - 1n // oid 0xffffffffffffffff: -1 as bigint
        const ext = utf8(JSON.stringify({ "user_name": "admin", "x": 1 }))
        const r = yield* w.commit(tx(0x03d0_0000_0000_0001n, [
          obj(0n, { "data": { "@ref": "0000000000000001" } }, [1n, high, 1n << 63n]),
          obj(1n, { "title": "Dokument ü" }, [], { blob: { size: 3, data: new Uint8Array([1, 2, 3]) } }),
          obj(high, { "a": 1 }, [], { blob: { size: 200_000, s3Key: blobS3Key(high, 0x03d0_0000_0000_0001n) } })
        ], { user: utf8("\ufeffadmin ü"), extension: ext }))
        assert.deepStrictEqual(r, { tid: 0x03d0_0000_0000_0001n, objects: 3, deletions: 0, blobs: 2, alreadyCommitted: false, statements: 1 })

        const [log] = yield* sql<{ tid: bigint; username: string; description: string; extension: Uint8Array; t: string }>`
          SELECT tid, username, description, extension, pg_typeof(username)::text AS t FROM transaction_log`
        assert.strictEqual(log!.tid, 0x03d0_0000_0000_0001n)
        assert.strictEqual(log!.username, "\ufeffadmin ü") // a BOM stays, as Python's decode("utf-8") keeps it
        assert.strictEqual(log!.t, "text")
        assert.deepStrictEqual(Buffer.from(log!.extension).toString(), JSON.stringify({ "user_name": "admin", "x": 1 }))
        const rows = yield* sql<{ zoid: bigint; refs: string; state: string; state_size: number; class_mod: string }>`
          SELECT zoid, refs::text, state::text, state_size, class_mod FROM object_state ORDER BY zoid`
        assert.deepStrictEqual(rows.map((x) => [x.zoid, x.refs]), [
          [-1n, "{}"],
          [0n, "{1,-1,-9223372036854775808}"],
          [1n, "{}"]
        ])
        assert.strictEqual(rows[1]!.state, `{"data": {"@ref": "0000000000000001"}}`)
        assert.strictEqual(rows[2]!.state, `{"title": "Dokument ü"}`)
        const blobs = yield* sql<{ zoid: bigint; blob_size: bigint; data: Uint8Array | null; s3_key: string | null }>`
          SELECT zoid, blob_size, data, s3_key FROM blob_state ORDER BY zoid`
        assert.deepStrictEqual(blobs.map((b) => [b.zoid, b.blob_size, b.data === null ? null : [...b.data], b.s3_key]), [
          [-1n, 200_000n, null, "blobs/ffffffffffffffff/03d0000000000001.blob"],
          [1n, 3n, [1, 2, 3], null]
        ])
        // zodb-pgjsonb's reads: load by zoid, loadBlob by (zoid, tid)
        assert.isTrue(yield* w.hasTransaction(0x03d0_0000_0000_0001n))
        assert.strictEqual(yield* w.lastTid, 0x03d0_0000_0000_0001n)
      })))

  it.live("an empty extension is an empty bytea, not NULL; a transaction without records is kept", () =>
    withWriter({ historyPreserving: true }, (w, sql) =>
      Effect.gen(function*() {
        yield* w.commit(tx(7n, []))
        const [r] = yield* sql<{ n: number; isnull: boolean; records: number }>`
          SELECT octet_length(extension) AS n, extension IS NULL AS isnull,
            (SELECT count(*)::int FROM object_state) AS records FROM transaction_log WHERE tid = 7`
        assert.deepStrictEqual({ ...r }, { n: 0, isnull: false, records: 0 })
      })))

  it.live("state JSON: \\u0000 is refused naming the record; an escaped backslash before u0000 and a large state are fine", () =>
    withWriter({ historyPreserving: false }, (w, sql) =>
      Effect.gen(function*() {
        assert.isTrue(hasNulEscape(`{"a": "x\\u0000"}`))
        assert.isTrue(hasNulEscape(`{"a": "\\\\\\u0000"}`))
        assert.isFalse(hasNulEscape(`{"a": "\\\\u0000"}`))
        const e = failureOf(yield* Effect.exit(w.commit(tx(9n, [obj(5n, { a: "ok" }), { ...obj(6n, {}), stateJson: `{"a": "x\\u0000y"}` }]))))
        assert.strictEqual(e._tag, "InvalidTransaction")
        assert.include(e.message, "oid 0x0000000000000006")
        assert.include(e.message, "\\u0000")
        assert.isFalse(yield* w.hasTransaction(9n)) // nothing of it was written

        const big = { text: "x".repeat(6 * 1024 * 1024), list: Array.from({ length: 20_000 }, (_, i) => i) }
        yield* w.commit(tx(10n, [{ ...obj(6n, {}), stateJson: `{"a": "\\\\u0000"}` }, obj(7n, big)]))
        const rows = yield* sql<{ zoid: bigint; len: number; a: string | null }>`
          SELECT zoid, octet_length(state::text) AS len, state->>'a' AS a FROM object_state ORDER BY zoid`
        assert.strictEqual(rows[0]!.a, "\\u0000")
        assert.isAbove(rows[1]!.len, 6 * 1024 * 1024)
      })))

  it.live("user and description: UTF-8 as text; not UTF-8 or NUL fails, or becomes U+FFFD with invalidText replace", () =>
    Effect.gen(function*() {
      yield* withWriter({ historyPreserving: false }, (w) =>
        Effect.gen(function*() {
          const bad = failureOf(yield* Effect.exit(w.commit(tx(3n, [], { user: new Uint8Array([0x61, 0xff]) }))))
          assert.include(bad.message, "the user is not UTF-8")
          const nul = failureOf(yield* Effect.exit(w.commit(tx(3n, [], { description: utf8("a\u0000b") }))))
          assert.include(nul.message, "the description holds a NUL character")
        }))
      yield* withWriter({ historyPreserving: false, invalidText: "replace" }, (w, sql) =>
        Effect.gen(function*() {
          yield* w.commit(tx(3n, [], { user: new Uint8Array([0x61, 0xff]), description: utf8("a\u0000b") }))
          const [r] = yield* sql<{ username: string; description: string }>`SELECT username, description FROM transaction_log`
          assert.deepStrictEqual([r!.username, r!.description], ["a\ufffd", "a\ufffdb"])
        }))
    }))

  it.live("blobs: exactly one of data / s3 key, the key zodb-pgjsonb's without the s3-prefix", () =>
    withWriter({ historyPreserving: false }, (w) =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<[PgJsonbRecord["blob"], string]> = [
          [{ size: 1 }, "exactly one of data and s3Key"],
          [{ size: 1, data: new Uint8Array([1]), s3Key: blobS3Key(1n, 5n) }, "exactly one of data and s3Key"],
          [{ size: 2, data: new Uint8Array([1]) }, "the blob has 1 bytes, its size says 2"],
          [{ size: 1, s3Key: `prefix/${blobS3Key(1n, 5n)}` }, "is not blobs/0000000000000001/0000000000000005.blob"]
        ]
        for (const [blob, text] of cases) {
          const e = failureOf(yield* Effect.exit(w.commit(tx(5n, [obj(1n, {}, [], { blob })]))))
          assert.include(e.message, text)
        }
        const e = failureOf(yield* Effect.exit(w.commit(tx(5n, [{ ...gone(1n), blob: { size: 1, data: new Uint8Array([1]) } }]))))
        assert.include(e.message, "a record without data has a blob")
      })))
})

describe("PgJsonbWriter: replays, order, deletions", () => {
  for (const hp of [false, true]) {
    const mode = hp ? "history-preserving" : "history-free"
    it.live(`${mode}: committing a transaction twice, split or not, gives the same database`, () =>
      Effect.gen(function*() {
        const history = [
          tx(1n, [obj(0n, { v: 1 }), obj(1n, { v: 1 }, [0n], { blob: { size: 2, data: new Uint8Array([9, 9]) } })]),
          tx(2n, [obj(1n, { v: 2 }), gone(0n), obj(2n, { v: 2 })]),
          tx(3n, [obj(2n, { v: 3 }), obj(3n, { v: 3 })])
        ]
        const once = yield* withWriter({ historyPreserving: hp }, (w) =>
          Effect.gen(function*() {
            for (const t of history) yield* w.commit(t)
            return yield* dumpTables
          }))
        for (const maxStatementRows of [20_000, 1]) {
          const twice = yield* withWriter({ historyPreserving: hp, maxStatementRows }, (w) =>
            Effect.gen(function*() {
              const first = yield* w.commit(history[0]!)
              assert.strictEqual(first.statements, maxStatementRows === 1 ? 3 : 1)
              const again = yield* w.commit(history[0]!)
              assert.isTrue(again.alreadyCommitted)
              for (const t of history.slice(1)) yield* w.commit(t)
              // a crash after the commit but before the watermark: all of them again
              for (const t of history) assert.isTrue((yield* w.commit(t)).alreadyCommitted)
              return yield* dumpTables
            }))
          assert.deepStrictEqual(twice, once)
        }
      }))

    it.live(`${mode}: deletions as zodb-pgjsonb records them; an older write committed later does not bring an object back`, () =>
      withWriter({ historyPreserving: hp }, (w, sql) =>
        Effect.gen(function*() {
          // out of order: the deletion (tid 2) before the creation (tid 1); tid 3 deletes an oid never written
          yield* w.commit(tx(2n, [gone(0n)]))
          yield* w.commit(tx(3n, [gone(9n)]))
          yield* w.commit(tx(1n, [obj(0n, { v: 1 }), obj(1n, { v: 1 })]))
          const live = yield* sql<{ zoid: bigint; tid: bigint; dead: boolean }>`SELECT zoid, tid, state IS NULL AS dead FROM object_state ORDER BY zoid`
          // during the copy the deletions are tombstones competing by tid
          assert.deepStrictEqual(live.map((r) => [r.zoid, r.tid, r.dead]), [[0n, 2n, true], [1n, 1n, false], [9n, 3n, true]])
          const done = yield* w.finalize()
          assert.strictEqual(done.tombstones, 2)
          const d = yield* dumpTables
          assert.deepStrictEqual(d.object_state.map((r) => JSON.parse(r).zoid), ["1"])
          assert.deepStrictEqual(d.transaction_log.map((r) => JSON.parse(r).tid), ["1", "2", "3"])
          if (hp) {
            // the creation's revision and zodb-pgjsonb's tombstones (zoid, tid, '', '', NULL, 0, '{}')
            assert.deepStrictEqual(d.object_history.map((r) => JSON.parse(r)), [
              { zoid: "0", tid: "1", class_mod: "persistent.mapping", class_name: "PersistentMapping", state: `{"v": 1}`, state_size: 17, refs: "{}" },
              { zoid: "0", tid: "2", class_mod: "", class_name: "", state: null, state_size: 0, refs: "{}" },
              { zoid: "9", tid: "3", class_mod: "", class_name: "", state: null, state_size: 0, refs: "{}" }
            ])
          } else assert.deepStrictEqual(d.object_history, [])
          // zoid_seq moved past every oid written, the deleted 9 included
          const [n] = yield* sql<{ v: bigint }>`SELECT nextval('zoid_seq') AS v`
          assert.strictEqual(n!.v, 10n)
        })))
  }
})

// ---- zodb-pgjsonb's own write path, as the reference ----------------------------------------------------

/**
 * One transaction written the way zodb-pgjsonb 1.14 writes it in tpc_vote (batch.py: _write_txn_log,
 * _batch_write_objects with copy-before-overwrite, _batch_delete_objects, _batch_write_blobs), in tid
 * order only: the reference the writer's results are compared with.
 */
const zodbPgjsonbVote = (sql: SqlClient.SqlClient, hp: boolean, t: PgJsonbTransaction) =>
  sql.withTransaction(Effect.gen(function*() {
    const tid = t.tid
    const s64 = (n: bigint) => BigInt.asIntN(64, n)
    yield* sql`INSERT INTO transaction_log (tid, username, description, extension) VALUES (${tid}, ${new TextDecoder().decode(t.user)}, ${new TextDecoder().decode(t.description)}, ${t.extension})`
    const writes = t.records.filter((r) => r.stateJson !== null)
    const deletes = t.records.filter((r) => r.stateJson === null)
    if (writes.length > 0) {
      if (hp) {
        yield* sql.unsafe(`INSERT INTO object_history (zoid, tid, class_mod, class_name, state, state_size, refs)
          SELECT zoid, tid, class_mod, class_name, state, state_size, refs FROM object_state WHERE zoid = ANY($1::bigint[])
          ON CONFLICT (zoid, tid) DO NOTHING`, [`{${writes.map((r) => s64(r.zoid)).join(",")}}`])
      }
      for (const r of writes) {
        yield* sql.unsafe(`INSERT INTO object_state (zoid, tid, class_mod, class_name, state, state_size, refs)
          VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::bigint[])
          ON CONFLICT (zoid) DO UPDATE SET tid = EXCLUDED.tid, class_mod = EXCLUDED.class_mod, class_name = EXCLUDED.class_name,
            state = EXCLUDED.state, state_size = EXCLUDED.state_size, refs = EXCLUDED.refs`,
        [s64(r.zoid), tid, r.classMod, r.className, r.stateJson, r.stateSize, `{${r.refs.map(s64).join(",")}}`])
      }
    }
    if (deletes.length > 0) {
      if (hp) {
        yield* sql.unsafe(`INSERT INTO object_history (zoid, tid, class_mod, class_name, state, state_size, refs)
          SELECT zoid, tid, class_mod, class_name, state, state_size, refs FROM object_state WHERE zoid = ANY($1::bigint[])
          ON CONFLICT (zoid, tid) DO NOTHING`, [`{${deletes.map((r) => s64(r.zoid)).join(",")}}`])
        for (const r of deletes) {
          yield* sql.unsafe(`INSERT INTO object_history (zoid, tid, class_mod, class_name, state, state_size, refs)
            VALUES ($1, $2, '', '', NULL, 0, '{}')`, [s64(r.zoid), tid])
        }
      }
      for (const r of deletes) yield* sql.unsafe(`DELETE FROM object_state WHERE zoid = $1`, [s64(r.zoid)])
    }
    for (const r of writes) {
      if (r.blob?.data !== undefined) {
        yield* sql.unsafe(`INSERT INTO blob_state (zoid, tid, blob_size, data) VALUES ($1, $2, $3, $4)
          ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = EXCLUDED.data`, [s64(r.zoid), tid, r.blob.size, r.blob.data])
      } else if (r.blob?.s3Key !== undefined) {
        yield* sql.unsafe(`INSERT INTO blob_state (zoid, tid, blob_size, s3_key) VALUES ($1, $2, $3, $4)
          ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, s3_key = EXCLUDED.s3_key, data = NULL`, [s64(r.zoid), tid, r.blob.size, r.blob.s3Key])
      }
    }
  }))

const truncate = (sql: SqlClient.SqlClient, hp: boolean) =>
  sql.unsafe(`TRUNCATE transaction_log, object_state, blob_state${hp ? ", object_history" : ""} CASCADE`)

const zoids = [0n, 1n, 2n, 3n, (1n << 63n) + 5n]
const recordArb = fc.record({
  zoid: fc.constantFrom(...zoids),
  kind: fc.constantFrom("write", "write", "delete", "inline", "s3"),
  v: fc.integer({ min: 0, max: 9 }),
  refs: fc.subarray(zoids, { maxLength: 2 })
})
const historyArb = fc.array(fc.uniqueArray(recordArb, { selector: (r) => r.zoid, maxLength: 4 }), { minLength: 1, maxLength: 6 })
  .map((txs) =>
    txs.map((records, i) => {
      const tid = BigInt(100 * (i + 1))
      return tx(tid, records.map((r): PgJsonbRecord =>
        r.kind === "delete" ? gone(r.zoid) : obj(r.zoid, { v: r.v, at: Number(tid) }, r.refs, {
          blob: r.kind === "inline" ? { size: 1, data: new Uint8Array([r.v]) } : r.kind === "s3" ? { size: 5, s3Key: blobS3Key(r.zoid, tid) } : undefined
        })
      ), { extension: i % 2 === 0 ? empty : utf8(JSON.stringify({ i })) })
    })
  )
/** `indices` shuffled, some of them twice (replays) */
const shuffledWithReplays = (indices: ReadonlyArray<number>) =>
  indices.length === 0 ? fc.constant([] as Array<number>) : fc.array(fc.constantFrom(...indices), { maxLength: 2 }).chain((replays) => {
    const all = [...indices, ...replays]
    return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length })
  })
// two runs (an incremental copy: the second starts after the first's last tid and is finalized again);
// in each, every transaction once, some twice, shuffled; and how many commit at once
const caseArb = historyArb.chain((history) =>
  fc.integer({ min: 0, max: history.length }).chain((cut) => {
    const keys = [...history.keys()]
    return fc.tuple(
      fc.constant(history),
      fc.tuple(shuffledWithReplays(keys.slice(0, cut)), shuffledWithReplays(keys.slice(cut))),
      fc.constantFrom(1, 3),
      // how many transactions travel together (commitMany); 1: commit
      fc.constantFrom(1, 2, 4)
    )
  })
)

describe("PgJsonbWriter: any commit order gives zodb-pgjsonb's in-order result", () => {
  for (const hp of [false, true]) {
    const mode = hp ? "history-preserving" : "history-free"
    it.live(`${mode}: every table equals zodb-pgjsonb's, for shuffled, replayed, concurrent and batched commits`, () =>
      Effect.gen(function*() {
        const client = () => Effect.map(Layer.build(Layer.fresh(TestDatabase.layerClientWith({ maxConnections: 4 }))), (c) => Context.get(c, SqlClient.SqlClient))
        const ours = yield* client()
        const reference = yield* client()
        const writer = yield* make({ historyPreserving: hp, maxStatementRows: 2 }).pipe(Effect.provideService(SqlClient.SqlClient, ours))
        yield* PgJsonbSchema.ensure(reference, { historyPreserving: hp })
        const context = yield* Effect.context<never>()
        const check = (history: ReadonlyArray<PgJsonbTransaction>, runs: ReadonlyArray<ReadonlyArray<number>>, concurrency: number, batch: number) =>
          Effect.gen(function*() {
            yield* truncate(ours, hp)
            yield* truncate(reference, hp)
            for (const order of runs) {
              // a twin replay racing its original may deadlock (retryable); the retry finds it committed
              const chunks: Array<Array<number>> = []
              for (let at = 0; at < order.length; at += batch) chunks.push(order.slice(at, at + batch))
              yield* Effect.forEach(chunks, (chunk) =>
                Effect.retry(
                  chunk.length === 1 ? Effect.asVoid(writer.commit(history[chunk[0]!]!)) : Effect.asVoid(writer.commitMany(chunk.map((i) => history[i]!))),
                  { times: 5, while: isRetryable }
                ), { concurrency, discard: true })
              const first = order.length === 0 ? undefined : history[Math.min(...order)]!.tid
              yield* writer.finalize({ sinceTid: first })
            }
            for (const t of history) yield* zodbPgjsonbVote(reference, hp, t)
            const got = yield* dumpTables.pipe(Effect.provideService(SqlClient.SqlClient, ours))
            const want = yield* dumpTables.pipe(Effect.provideService(SqlClient.SqlClient, reference))
            assert.deepStrictEqual(got, want)
            const ranges = yield* writer.committedTids(0n, 1000n)
            assert.deepStrictEqual(ranges, history.map((t) => t.tid))
          })
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(caseArb, ([history, runs, concurrency, batch]) =>
              Effect.runPromiseWith(context)(check(history, runs, concurrency, batch))),
            { numRuns: 50 }
          )
        )
      }))
  }
})

describe("PgJsonbWriter: resume and the post-copy step", () => {
  it.live("committedTids, the watermark (forward only), finalize drops it and sets zoid_seq", () =>
    withWriter({ historyPreserving: true }, (w, sql) =>
      Effect.gen(function*() {
        for (const tid of [10n, 20n, 40n]) yield* w.commit(tx(tid, [obj(tid / 10n, { tid: Number(tid) })]))
        yield* w.commit(tx(50n, [obj(2n, { again: true })]))
        assert.deepStrictEqual(yield* w.committedTids(15n, 45n), [20n, 40n])
        assert.deepStrictEqual(yield* w.committedTids(0n, 5n), [])
        assert.isFalse(yield* w.hasTransaction(30n))
        assert.strictEqual(yield* w.readWatermark, undefined)
        const during = yield* PgJsonbSchema.inspect(sql)
        assert.isTrue(during._tag === "PgJsonb" && during.copyInProgress)
        yield* w.setWatermark(20n)
        yield* w.setWatermark(10n)
        assert.strictEqual(yield* w.readWatermark, 20n)

        const before = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM object_history`
        assert.strictEqual(before[0]!.n, 4) // every revision, the current ones too, until finalize
        const done = yield* w.finalize()
        assert.deepStrictEqual(done, { sequenceSetTo: 5n, tombstones: 0, compacted: 3 })
        assert.strictEqual(yield* w.readWatermark, undefined)
        const [t] = yield* sql<{ ok: boolean }>`SELECT to_regclass('zodb_convert_watermark') IS NULL AS ok`
        assert.isTrue(t!.ok)
        const hist = yield* sql<{ zoid: bigint; tid: bigint }>`SELECT zoid, tid FROM object_history ORDER BY zoid, tid`
        assert.deepStrictEqual(hist.map((r) => [r.zoid, r.tid]), [[2n, 20n]])
        // idempotent
        assert.deepStrictEqual(yield* w.finalize(), { sequenceSetTo: undefined, tombstones: 0, compacted: 0 })
        // the schema is zodb-pgjsonb's again, nothing of the copy's left
        const again = yield* PgJsonbSchema.ensure(sql, { historyPreserving: true })
        assert.deepStrictEqual(again.repaired, [])
        assert.isFalse(again.inspection.copyInProgress)
      })))
})
