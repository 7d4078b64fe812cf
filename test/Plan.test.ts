// `lo-migrate plan` and `migrate --dry-run` through the executable: counts, exact bytes, histogram,
// problems, the estimate's basis, and that nothing is written to PostgreSQL or S3.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { addSha2Column, createNice2Schema, insertObject, randomBytes, readRows, unlinkLargeObject } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import * as Plan from "../src/migrate/Plan.ts"
import { pgFlags, target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

const hasSha2Column = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ n: bigint }>`
    SELECT count(*) AS n FROM pg_attribute WHERE attrelid = '_nice_binary'::regclass AND attname = 'sha2' AND NOT attisdropped`
  return Number(rows[0]!.n) === 1
})

/** A table with objects of several sizes and one row for each problem plan looks for. */
const fixture = Effect.gen(function*() {
  yield* createNice2Schema()
  const sized = [
    yield* insertObject({ bytes: randomBytes(0, 1) }),
    yield* insertObject({ bytes: randomBytes(12, 2) }),
    yield* insertObject({ bytes: randomBytes(2000, 3) }),
    yield* insertObject({ bytes: randomBytes(300 * 1024, 4) })
  ]
  const nullData = yield* insertObject({ bytes: null })
  const dangling = yield* insertObject({ bytes: randomBytes(10, 5) })
  yield* unlinkLargeObject(dangling.oid!)
  const sharedWith = sized[1]!
  const sharing = yield* insertObject({ bytes: randomBytes(12, 2), hash: "ab".repeat(20), dataOid: sharedWith.oid })
  const malformed = yield* insertObject({ bytes: randomBytes(7, 6), hash: "not-a-sha1" })
  return { sized, nullData, dangling, sharedWith, sharing, malformed }
})

describe("lo-migrate plan", () => {
  it.live("counts, sizes, problems and an estimate, without adding sha2 or touching S3", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const all = [...f.sized, f.nullData, f.dangling, f.sharing, f.malformed]
      const bytes = all.reduce((s, o) => s + o.size, 0)
      const result = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "5"])
      assert.strictEqual(result.code, 0, result.stderr)
      const out = result.stdout
      assert.match(out, new RegExp(`to migrate: +${all.length}  ${bytes} bytes \\(`))
      assert.match(out, /already migrated: +0  0 bytes/)
      assert.match(out, new RegExp(`total: +${all.length}  ${bytes} bytes`))
      // histogram: 0 B: the empty object and the NULL-data row (size 0); <= 1 KiB: 12, 10, 12, 7 bytes
      assert.match(out, /\n  0 B +2  0 bytes/)
      assert.match(out, new RegExp(`\\n  <= 1\\.00 KiB +4  ${12 + 10 + 12 + 7} bytes`))
      assert.match(out, /\n  <= 16\.00 KiB +1  2000 bytes/)
      assert.match(out, new RegExp(`\\n  <= 1\\.00 MiB +1  ${300 * 1024} bytes`))
      assert.include(out, `NULL data:      1 (e.g. ${f.nullData.hash})`)
      assert.include(out, `dangling oids:  1 (e.g. ${f.dangling.hash} -> oid ${f.dangling.oid})`)
      assert.include(out, `malformed keys: 1 (e.g. "not-a-sha1")`)
      const pair = [f.sharedWith.hash, f.sharing.hash].sort().join(" ")
      assert.include(out, `oids shared by several rows (whole table): 1 oid(s) in 2 row(s) (e.g. oid ${f.sharedWith.oid}: ${pair})`)
      assert.include(out, "column sha2 does not exist yet: every row counts as not migrated")
      assert.include(out, "batch job nice2.dms.DeleteUnreferencedBinariesBatchJob is inactive")
      assert.include(out, "S3 not checked (no --bucket given)")
      assert.match(out, /about \d+h \d\dm \d\ds \([\d.]+ s\) to read 8 object\(s\)/)
      assert.match(out, /based on: [1-5] sampled object\(s\), \d+ bytes, read and hashed in [\d.]+ s on one connection/)

      assert.isFalse(yield* hasSha2Column, "plan added no column")
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [])
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("counts migrated rows once sha2 exists, and refuses a missing table with exit 2", () =>
    Effect.gen(function*() {
      const missing = yield* runCli(["plan", ...(yield* pgFlags)])
      assert.strictEqual(missing.code, 2, missing.stderr)
      assert.include(missing.stderr, "table _nice_binary: does not exist")

      yield* createNice2Schema()
      yield* addSha2Column
      const done = yield* insertObject({ bytes: randomBytes(100, 7), sha2: "a".repeat(64) })
      yield* insertObject({ bytes: randomBytes(50, 8) })
      const result = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "0"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stdout, /to migrate: +1  50 bytes/)
      assert.match(result.stdout, new RegExp(`already migrated: +1  ${done.size} bytes`))
      assert.match(result.stdout, /total: +2  150 bytes/)
      assert.include(result.stdout, "unknown: no object could be sampled")
      assert.notInclude(result.stdout, "column sha2 does not exist")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("migrate --dry-run prints the plan and only reads S3; plan checks a bucket when given one", () =>
    Effect.gen(function*() {
      yield* fixture
      const before = yield* readRows
      const proxy = yield* FaultProxy
      const viaProxy = [...(yield* target)]
      viaProxy[viaProxy.indexOf("--s3-url") + 1] = proxy.endpoint
      const result = yield* runCli(["migrate", ...viaProxy, "--dry-run"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "plan for _nice_binary (read only: nothing was written to PostgreSQL or S3)")
      assert.match(result.stdout, /to migrate: +8 /)
      assert.match(result.stdout, /S3 s3:\/\/lo-migrate-test-[0-9a-f]+ at http:\/\/127\.0\.0\.1:\d+: reachable and readable/)
      assert.notInclude(result.stdout, "Migration completed")
      assert.isFalse(yield* hasSha2Column)
      assert.deepStrictEqual(yield* readRows, before)
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [])

      const missing = [...viaProxy]
      missing[missing.indexOf("--bucket") + 1] = "no-such-bucket-here"
      const planned = yield* runCli(["plan", ...missing, "--sample", "0"])
      assert.strictEqual(planned.code, 0, planned.stderr)
      assert.include(planned.stdout, "S3 bucket no-such-bucket-here: does not exist")
      assert.include(planned.stdout, "migrate would refuse to start")
      // only reads went to S3: no probe object was put (and deleted) by either run
      const methods = (yield* proxy.log).map((request) => request.method)
      assert.isAbove(methods.length, 0)
      assert.deepStrictEqual([...new Set(methods)], ["GET"])
    }).pipe(Effect.scoped, Effect.provide(Layer.provideMerge(FaultProxy.layer, env))))
})

describe("Plan.fit", () => {
  it("separates the per-object and per-byte cost, and falls back to a rate when it cannot", () => {
    // 2 ms per object + 1 ms per KiB
    const samples = [1, 4, 16, 64].map((k) => ({ size: k * 1024, seconds: 0.002 + k * 0.001 }))
    const fitted = Plan.fit(samples)
    assert.closeTo(fitted.perObject, 0.002, 1e-9)
    assert.closeTo(fitted.perByte, 0.001 / 1024, 1e-12)
    // all the same size: one rate for the bytes
    const same = Plan.fit([{ size: 100, seconds: 0.01 }, { size: 100, seconds: 0.03 }, { size: 100, seconds: 0.02 }])
    assert.strictEqual(same.perObject, 0)
    assert.closeTo(same.perByte, 0.06 / 300, 1e-12)
    // empty objects only: a cost per object
    assert.deepStrictEqual(Plan.fit([{ size: 0, seconds: 0.5 }]), { perObject: 0.5, perByte: 0 })
  })
})
