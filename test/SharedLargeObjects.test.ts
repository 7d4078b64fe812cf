// A large object that several rows reference is read once (relstorage: blobs made of the same chunks).
// Through the executable: the bytes read from PostgreSQL (the run's `bytes.received`, a deterministic
// count) equal the distinct objects' bytes, and every sharing blob still gets its own blob_state row and
// its own S3 object with exact bytes (or its inline copy). Within a page, across pages (with an index on
// blob_chunk(chunk)), per shard, and a shared object that is missing fails every row that names it.
import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import type { RelStorageProfile } from "../src/domain/Profile.ts"
import type { Candidate } from "../src/domain/LargeObject.ts"
import * as Aliases from "../src/phases/Aliases.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { makeTracker } from "../src/pipeline/Watermark.ts"
import { Stats } from "../src/core/Stats.ts"
import * as RelStorageSource from "../src/profiles/relstorage/RelStorageSource.ts"
import { CopySource } from "../src/phases/CopySource.ts"
import { runCli } from "./support/Cli.ts"
import { createLargeObject, randomBytes, sha256Hex, unlinkLargeObject } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const KiB = 1024
const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const createBlobChunk = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, tid bigint NOT NULL, chunk_num bigint NOT NULL,
    chunk oid NOT NULL, PRIMARY KEY (zoid, tid, chunk_num))`
})

/** A blob (zoid, tid) made of the large objects `oids`, in chunk_num order. */
const insertBlob = (zoid: number, tid: number, oids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (let i = 0; i < oids.length; i++) {
      yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (${zoid}, ${tid}, ${i}, ${oids[i]!})`
    }
  })

const concat = (parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))))
const s3Key = (zoid: number, tid: number) => RelStorageSource.s3KeyOf(undefined, BigInt(zoid), BigInt(tid))

/** The events of a `--progress json` run: the last snapshot and the summary. */
const events = (stdout: string) => {
  const all = stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, any>)
  return { snapshot: all.filter((e) => e.event === "snapshot").at(-1)!, summary: all.at(-1)! }
}

const readState = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly zoid: string; readonly tid: string; readonly blob_size: string; readonly data: Uint8Array | null; readonly s3_key: string | null }>`
    SELECT zoid::text, tid::text, blob_size::text, data, s3_key FROM blob_state ORDER BY zoid, tid`
  return new Map(rows.map((r) => [`${r.zoid}/${r.tid}`, r]))
})

/** Every blob has its blob_state row, and its bytes in S3 (or inline) exactly. */
const assertMigrated = (blobs: ReadonlyArray<{ readonly zoid: number; readonly tid: number; readonly bytes: Uint8Array }>, threshold: number) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const state = yield* readState
    for (const blob of blobs) {
      const row = state.get(`${blob.zoid}/${blob.tid}`)
      assert.isDefined(row, `blob_state row of ${blob.zoid}/${blob.tid}`)
      assert.strictEqual(Number(row!.blob_size), blob.bytes.length)
      if (blob.bytes.length < threshold) {
        assert.isNull(row!.s3_key)
        assert.strictEqual(Buffer.compare(Buffer.from(row!.data!), Buffer.from(blob.bytes)), 0, `inline ${blob.zoid}/${blob.tid}`)
      } else {
        assert.strictEqual(row!.s3_key, s3Key(blob.zoid, blob.tid))
        const stored = Option.getOrThrow(yield* s3.getObject(row!.s3_key!))
        assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(blob.bytes)), 0, row!.s3_key!)
      }
    }
  })

describe("shared large objects are read once (relstorage)", () => {
  it.live("within a page: blobs of the same chunks are read once, each gets its row and its S3 object or inline copy", () =>
    Effect.gen(function*() {
      yield* createBlobChunk
      const big = randomBytes(150 * KiB, 1)
      const c1 = randomBytes(60 * KiB, 2)
      const c2 = randomBytes(60 * KiB, 3)
      const small = new TextEncoder().encode("a small blob, stored inline by each blob that has it")
      const unique = randomBytes(120 * KiB, 4)
      const [bigOid, c1Oid, c2Oid, smallOid, uniqueOid] = yield* Effect.forEach([big, c1, c2, small, unique], createLargeObject)
      const blobs = [
        ...[[1, 10], [2, 10], [3, 10]].map(([zoid, tid]) => ({ zoid: zoid!, tid: tid!, oids: [bigOid!], bytes: big })),
        // the same two chunks in the same order: one object
        ...[[4, 1], [5, 1]].map(([zoid, tid]) => ({ zoid: zoid!, tid: tid!, oids: [c1Oid!, c2Oid!], bytes: concat([c1, c2]) })),
        // only the first of them: another object, read on its own
        { zoid: 6, tid: 1, oids: [c1Oid!], bytes: c1 },
        ...[[7, 1], [8, 1]].map(([zoid, tid]) => ({ zoid: zoid!, tid: tid!, oids: [smallOid!], bytes: small })),
        { zoid: 9, tid: 1, oids: [uniqueOid!], bytes: unique }
      ]
      for (const blob of blobs) yield* insertBlob(blob.zoid, blob.tid, blob.oids)

      const args = ["migrate", ...(yield* target), "--profile", "relstorage", "--progress", "json"]
      const run = yield* runCli(args)
      assert.strictEqual(run.code, 0, run.stderr)
      const { snapshot, summary } = events(run.stdout)
      const distinct = big.length + c1.length + c2.length + c1.length + small.length + unique.length
      assert.strictEqual(snapshot.bytes.received, distinct, "each distinct object read once")
      assert.strictEqual(snapshot.processed.receiver, 5)
      assert.strictEqual(snapshot.processed.observer, blobs.length)
      assert.deepInclude(summary, { outcome: "success", migrated: blobs.length, bytes: blobs.reduce((n, b) => n + b.bytes.length, 0) })
      assert.include(run.stderr, "blob_chunk has no index on (chunk)")
      yield* assertMigrated(blobs, 100 * KiB)
      // one object per blob in S3 (inline blobs have none)
      const keys = [...(yield* (yield* TestS3).listKeys())].sort()
      assert.deepStrictEqual(keys, blobs.filter((b) => b.bytes.length >= 100 * KiB).map((b) => s3Key(b.zoid, b.tid)).sort())

      const again = yield* runCli(args)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.deepInclude(events(again.stdout).summary, { migrated: 0 })
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("across pages (index on blob_chunk(chunk)): later blobs ride along with the first and are not listed again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk
      yield* sql`CREATE INDEX blob_chunk_loid ON blob_chunk (chunk)`
      // 1100 unique inline blobs: more than one observer page (1024)
      const fillers = 1100
      yield* sql`INSERT INTO blob_chunk SELECT 100 + g, 1, 0, lo_from_bytea(0, convert_to('filler blob ' || g, 'UTF8'))
        FROM generate_series(1, ${fillers}::int) AS g`
      const [filler] = yield* sql<{ readonly n: string }>`SELECT sum(length(convert_to('filler blob ' || g, 'UTF8')))::text AS n
        FROM generate_series(1, ${fillers}::int) AS g`
      const big = randomBytes(130 * KiB, 7)
      const small = new TextEncoder().encode("shared inline blob")
      const [bigOid, smallOid] = yield* Effect.forEach([big, small], createLargeObject)
      const shared = [
        { zoid: 1, tid: 1, oids: [bigOid!], bytes: big },
        { zoid: 5000, tid: 3, oids: [bigOid!], bytes: big },
        { zoid: 7000, tid: 1, oids: [bigOid!], bytes: big },
        { zoid: 2, tid: 1, oids: [smallOid!], bytes: small },
        { zoid: 6000, tid: 9, oids: [smallOid!], bytes: small }
      ]
      for (const blob of shared) yield* insertBlob(blob.zoid, blob.tid, blob.oids)

      const run = yield* runCli(["migrate", ...(yield* target), "--profile", "relstorage", "--progress", "json"])
      assert.strictEqual(run.code, 0, run.stderr)
      const { snapshot, summary } = events(run.stdout)
      assert.strictEqual(snapshot.bytes.received, Number(filler!.n) + big.length + small.length)
      assert.strictEqual(snapshot.processed.receiver, fillers + 2)
      assert.deepInclude(summary, { outcome: "success", migrated: fillers + shared.length })
      assert.notInclude(run.stderr, "has no index")
      yield* assertMigrated(shared, 100 * KiB)
      const [n] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM blob_state`
      assert.strictEqual(Number(n!.n), fillers + shared.length)
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("--shard: a shard reads a shared object once for its own blobs and leaves the others' to them", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk
      yield* sql`CREATE INDEX ON blob_chunk (chunk)`
      const big = randomBytes(110 * KiB, 9)
      const oid = yield* createLargeObject(big)
      const blobs = Array.from({ length: 10 }, (_, i) => ({ zoid: 10 + i, tid: 1, oids: [oid], bytes: big }))
      for (const blob of blobs) yield* insertBlob(blob.zoid, blob.tid, blob.oids)
      // which shard each blob falls in, by the same hash the source uses
      const perShard = yield* sql<{ readonly shard: number; readonly n: string }>`
        SELECT (abs(hashtext(ROW(zoid, tid)::text)::bigint) % 2)::int AS shard, count(*)::text AS n
        FROM blob_chunk GROUP BY 1 ORDER BY 1`
      const t = yield* target
      const runs = yield* Effect.all(
        ["0/2", "1/2"].map((shard) => runCli(["migrate", ...t, "--profile", "relstorage", "--shard", shard, "--progress", "json"])),
        { concurrency: "unbounded" }
      )
      for (const [i, run] of runs.entries()) {
        assert.strictEqual(run.code, 0, run.stderr)
        const mine = Number(perShard.find((s) => s.shard === i)?.n ?? 0)
        const { snapshot, summary } = events(run.stdout)
        assert.deepInclude(summary, { migrated: mine }, `shard ${i}`)
        assert.strictEqual(snapshot.bytes.received, mine === 0 ? 0 : big.length, `shard ${i} reads the object once`)
      }
      yield* assertMigrated(blobs, 100 * KiB)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("a shared large object that is missing fails every blob that names it, each by its key", () =>
    Effect.gen(function*() {
      yield* createBlobChunk
      const gone = yield* createLargeObject(randomBytes(2 * KiB, 11))
      yield* unlinkLargeObject(gone)
      const fine = randomBytes(3 * KiB, 12)
      const fineOid = yield* createLargeObject(fine)
      yield* insertBlob(1, 1, [gone])
      yield* insertBlob(2, 1, [gone])
      yield* insertBlob(3, 1, [fineOid])
      const run = yield* runCli(["migrate", ...(yield* target), "--profile", "relstorage", "--progress", "json"])
      assert.strictEqual(run.code, 1, run.stderr)
      const failed = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e.event === "row-failed")
      assert.deepStrictEqual(failed.map((e) => [e.key, e.reason]).sort(), [["1/1", "missing-object"], ["2/1", "missing-object"]])
      assert.deepInclude(events(run.stdout).summary, { migrated: 1, failed: 2 })
      const state = yield* readState
      assert.deepStrictEqual([...state.keys()], ["3/1"])
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--dest-pg-url: a sharing blob already in the other database's blob_state is left alone, the others share one read", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk
      yield* sql`CREATE INDEX ON blob_chunk (chunk)`
      const big = randomBytes(120 * KiB, 13)
      const oid = yield* createLargeObject(big)
      for (const zoid of [1, 2, 3]) yield* insertBlob(zoid, 1, [oid])
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const dest = PgClient.layer({ url: Redacted.make(other.url), maxConnections: 1 })
      yield* Effect.gen(function*() {
        const d = yield* SqlClient.SqlClient
        yield* d`CREATE TABLE blob_state (zoid bigint NOT NULL, tid bigint NOT NULL, blob_size bigint NOT NULL,
          data bytea, s3_key text, PRIMARY KEY (zoid, tid))`
        yield* d`INSERT INTO blob_state VALUES (2, 1, ${big.length}, NULL, 'elsewhere')`
      }).pipe(Effect.provide(dest))
      const run = yield* runCli(["migrate", ...(yield* target), "--profile", "relstorage", "--dest-pg-url", other.url, "--progress", "json"])
      assert.strictEqual(run.code, 0, run.stderr)
      const { snapshot, summary } = events(run.stdout)
      assert.strictEqual(snapshot.bytes.received, big.length)
      assert.deepInclude(summary, { outcome: "success", migrated: 2 })
      const rows = yield* Effect.gen(function*() {
        const d = yield* SqlClient.SqlClient
        return yield* d<{ readonly zoid: string; readonly s3_key: string }>`SELECT zoid::text, s3_key FROM blob_state ORDER BY zoid`
      }).pipe(Effect.provide(dest))
      assert.deepStrictEqual(rows.map((r) => [r.zoid, r.s3_key]), [["1", s3Key(1, 1)], ["2", "elsewhere"], ["3", s3Key(3, 1)]])
      const s3 = yield* TestS3
      for (const zoid of [1, 3]) {
        const stored = Option.getOrThrow(yield* s3.getObject(s3Key(zoid, 1)))
        assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(big)), 0)
      }
      assert.isTrue(Option.isNone(yield* s3.getObject(s3Key(2, 1))))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("table profile: rows sharing a large object are read once; one PUT per distinct key, every row marked", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const shared = randomBytes(70 * KiB, 14)
      const other = randomBytes(30 * KiB, 15)
      const [sharedOid, otherOid] = yield* Effect.forEach([shared, other], createLargeObject)
      const rows = [[1, sharedOid!], [2, otherOid!], [3, sharedOid!], [4, sharedOid!]] as const
      const t = yield* target
      for (const [table, template] of [["by_content", "att/{sha256}"], ["by_row", "row/{key}"]] as const) {
        yield* sql.unsafe(`CREATE TABLE ${table} (id bigint PRIMARY KEY, content oid)`)
        for (const [id, oid] of rows) yield* sql.unsafe(`INSERT INTO ${table} VALUES ($1, $2)`, [id, oid])
        const run = yield* runCli([
          "migrate", ...t, "--profile", "table", "--table", `public.${table}`, "--oid-column", "content", "--key-column", "id",
          "--key-template", template, "--progress", "json"
        ])
        assert.strictEqual(run.code, 0, run.stderr)
        const { snapshot, summary } = events(run.stdout)
        assert.strictEqual(snapshot.bytes.received, shared.length + other.length, table)
        // {sha256}: the three rows share one object and one PUT; {key}: one object each
        assert.strictEqual(snapshot.bytes.stored, table === "by_content" ? shared.length + other.length : 3 * shared.length + other.length, table)
        assert.deepInclude(summary, { outcome: "success", migrated: 4 })
        const marked = yield* sql.unsafe<{ readonly id: string; readonly sha256: string }>(`SELECT id::text, sha256 FROM ${table} ORDER BY id`)
        assert.deepStrictEqual(marked.map((r) => r.sha256), [sha256Hex(shared), sha256Hex(other), sha256Hex(shared), sha256Hex(shared)])
      }
      const keys = [...(yield* s3.listKeys())].sort()
      assert.deepStrictEqual(keys, [
        `att/${sha256Hex(other)}`, `att/${sha256Hex(shared)}`, "row/1", "row/2", "row/3", "row/4"
      ].sort())
      const row3 = Option.getOrThrow(yield* s3.getObject("row/3"))
      assert.strictEqual(Buffer.compare(Buffer.from(row3.bytes), Buffer.from(shared)), 0)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("SIGKILL at random moments, then a run to the end: every sharing blob migrated, no row without its object", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createBlobChunk
      yield* sql`CREATE INDEX ON blob_chunk (chunk)`
      yield* sql`INSERT INTO blob_chunk SELECT 100 + g, 1, 0, lo_from_bytea(0, convert_to('filler blob ' || g, 'UTF8'))
        FROM generate_series(1, 1100) AS g`
      // each object shared by three blobs: one among the first fillers, two pages away
      const blobs: Array<{ readonly zoid: number; readonly tid: number; readonly bytes: Uint8Array }> = []
      for (let i = 0; i < 30; i++) {
        const bytes = randomBytes(150 * KiB + i, 100 + i)
        const oid = yield* createLargeObject(bytes)
        for (const zoid of [101 + i * 30, 1500 + i, 3000 + i]) {
          yield* insertBlob(zoid, 7, [oid])
          blobs.push({ zoid, tid: 7, bytes })
        }
      }
      const bytesOf = new Map(blobs.map((b) => [s3Key(b.zoid, b.tid), b.bytes]))
      // the invariant at every stop: a blob_state row with an s3_key has its exact bytes in S3
      const assertRowsBacked = Effect.gen(function*() {
        const [created] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
        if (created?.present !== true) return // killed before it created blob_state
        const state = yield* readState
        for (const row of state.values()) {
          if (row.s3_key === null) continue
          const stored = Option.getOrThrow(yield* s3.getObject(row.s3_key))
          assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(bytesOf.get(row.s3_key)!)), 0, row.s3_key)
        }
      })
      const args = ["migrate", ...(yield* target), "--profile", "relstorage", "--commit-chunk", "7", "--storer-threads", "3"]
      let seed = 20261121
      const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
      let killed = 0
      for (let k = 0; k < 3; k++) {
        const delay = 300 + Math.floor(random() * 2500)
        const result = yield* runCli(args, {
          onStart: (child) => {
            const timer = setTimeout(() => child.kill("SIGKILL"), delay)
            child.on("close", () => clearTimeout(timer))
          }
        })
        if (result.signal === "SIGKILL") killed++
        else assert.strictEqual(result.code, 0, result.stderr)
        yield* assertRowsBacked
      }
      const last = yield* runCli(args)
      assert.strictEqual(last.code, 0, last.stderr)
      yield* assertMigrated(blobs, 100 * KiB)
      const [n] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM blob_state`
      assert.strictEqual(Number(n!.n), 1100 + blobs.length)
      const verified = yield* runCli(["verify", ...(yield* target), "--profile", "relstorage", "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, `${blobs.length} good, 0 bad`)
      // killed runs are not guaranteed on a fast machine; the end state is checked either way
      if (killed === 0) yield* Effect.logWarning("no run was killed before it ended")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)
})

describe("RelStorageSource.page with shared large objects", () => {
  const profile: RelStorageProfile = { _tag: "relstorage", blobThreshold: 100 * KiB, s3Prefix: undefined, destPgUrl: undefined, consumer: undefined }
  const source = RelStorageSource.layer(profile, undefined, defaultPolicy(1)).pipe(Layer.provideMerge(Stats.layer))
  const keysOf = (rows: ReadonlyArray<{ readonly row: { readonly _tag: string } }>) =>
    rows.map((r) => {
      const c = (r.row as unknown as { readonly success: Candidate }).success
      return c.aliases === undefined ? c.key : `${c.key}+${c.aliases.map((a) => a.key).join("+")}`
    })

  it.live("aliases beyond the page are handed out once per listing; a new listing hands them out again", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk
      yield* sql`CREATE INDEX ON blob_chunk (chunk)`
      const [a, b, c, d] = yield* Effect.forEach([1, 2, 3, 4], (i) => createLargeObject(randomBytes(100 + i, 20 + i)))
      yield* insertBlob(1, 1, [a!])
      yield* insertBlob(2, 1, [b!])
      yield* insertBlob(3, 1, [a!]) // beyond the first page of two: rides with 1/1
      yield* insertBlob(4, 1, [c!, d!])
      yield* insertBlob(5, 1, [c!]) // not the same chunks as 4/1
      yield* insertBlob(6, 1, [c!, d!]) // rides with 4/1 (its page's alias beyond it)
      yield* insertBlob(7, 1, [b!])
      const listing = Effect.gen(function*() {
        const src = yield* CopySource
        const pages: Array<ReadonlyArray<string>> = []
        let after: string | undefined
        while (true) {
          const rows = yield* src.page(after, 2)
          if (rows.length > 0) pages.push(keysOf(rows))
          if (rows.length < 2) return pages
          after = rows[rows.length - 1]!.key
        }
      })
      const expected = [["1/1+3/1", "2/1+7/1"], ["4/1+6/1", "5/1"]]
      yield* Effect.gen(function*() {
        yield* (yield* CopySource).prepare
        assert.deepStrictEqual(yield* listing, expected)
        // nothing was committed: the next listing (a new run) hands everything out again
        assert.deepStrictEqual(yield* listing, expected)
      }).pipe(Effect.provide(source))
    }).pipe(Effect.scoped, Effect.provide(TestDatabase.layerClient)), 60_000)
})

describe("Aliases.groupTracker", () => {
  it("a group settles the watermark only once every one of its rows is committed, never at an alias's key", () => {
    const tracker = Aliases.groupTracker(makeTracker())
    const alias = (key: string): Candidate => ({ key, oid: 1, size: 1, contentType: "x", expectedSha1: undefined })
    tracker.listed("1/1")
    tracker.grouped({ ...alias("1/1"), aliases: [alias("9/1"), alias("3/1")] })
    tracker.listed("2/1")
    tracker.committed("2/1")
    tracker.committed("1/1")
    tracker.committed("9/1")
    assert.isUndefined(tracker.current(), "3/1 is not committed yet")
    tracker.committed("3/1")
    assert.strictEqual(tracker.current(), "2/1")
    tracker.listed("4/1")
    tracker.grouped({ ...alias("4/1"), aliases: [alias("5/1")] })
    tracker.failed("5/1")
    tracker.committed("4/1")
    assert.strictEqual(tracker.current(), "2/1", "a failed alias holds its group back")
  })
})
