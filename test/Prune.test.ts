// `lo-migrate prune` through the executable: a dry run changes nothing; --yes unlinks only the large
// objects of rows whose copy verifies and that no other row still references, sets data = NULL, and
// names what it refused.
import { DeleteObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes, readLargeObject, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

const largeObjectExists = (oid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata WHERE oid = ${oid}`
    return Number(rows[0]!.n) === 1
  })

const dataOf = (hash: string) => Effect.map(readRows, (rows) => rows.find((r) => r.hash === hash)!.data)

describe("lo-migrate prune", () => {
  it.live("refuses bad and unmigrated rows, keeps shared objects, unlinks the rest; dry run first", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const shared = yield* insertObject({ bytes: randomBytes(500, 600) })
      const bad = yield* insertObject({ bytes: randomBytes(700, 601) })
      const good = yield* insertObject({ bytes: randomBytes(900, 602) })
      const good2 = yield* insertObject({ bytes: randomBytes(1100, 603) })
      const migrated = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      // after the migration: a new row not migrated yet, one that shares the first row's large object,
      // and the object of `bad` gone from S3
      const fresh = yield* insertObject({ bytes: randomBytes(300, 604) })
      const sharing = yield* insertObject({ bytes: null, hash: "cd".repeat(20), dataOid: shared.oid })
      yield* s3.use("DeleteObject", (c) => c.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: bad.sha256! })))
      const before = yield* readRows
      const args = ["prune", ...(yield* target), "--batch-size", "1"]

      const dry = yield* runCli(args)
      assert.strictEqual(dry.code, 1, dry.stderr)
      assert.include(dry.stdout, "dry run (nothing changed; add --yes to prune)")
      assert.include(dry.stdout, `would release 3 row(s)`)
      assert.include(dry.stdout, `would unlink 2 large object(s), would free 1.95 KiB (2000 bytes)`)
      assert.include(dry.stdout, `would keep 1 large object(s) still referenced by other rows`)
      assert.include(dry.stdout, `WOULD KEEP large object ${shared.oid}: still referenced by ${sharing.hash}`)
      assert.match(dry.stdout, new RegExp(`REFUSED ${bad.hash} \\(oid ${bad.oid}, object ${bad.sha256}\\): missing-object:`))
      assert.include(dry.stdout, `REFUSED ${fresh.hash} (oid ${fresh.oid}): not migrated (no sha2)`)
      assert.include(dry.stdout, `REFUSED ${sharing.hash} (oid ${shared.oid}): not migrated (no sha2)`)
      assert.include(dry.stdout, "refused 1 bad, 2 not migrated")
      assert.deepStrictEqual(yield* readRows, before, "the dry run changed no row")
      for (const o of [shared, bad, good, good2, fresh]) assert.isTrue(yield* largeObjectExists(o.oid!))

      const real = yield* runCli([...args, "--yes"])
      assert.strictEqual(real.code, 1, real.stderr)
      assert.include(real.stdout, "pruned: checked 4 migrated row(s)")
      assert.include(real.stdout, "released 3 row(s) (data = NULL), unlinked 2 large object(s), freed 1.95 KiB (2000 bytes)")
      assert.include(real.stdout, `KEPT large object ${shared.oid}: still referenced by ${sharing.hash}`)
      assert.include(real.stderr, "1 migrated object(s) failed verification: their large objects were kept")
      assert.isNull(yield* dataOf(good.hash))
      assert.isNull(yield* dataOf(good2.hash))
      assert.isNull(yield* dataOf(shared.hash))
      assert.isFalse(yield* largeObjectExists(good.oid!))
      assert.isFalse(yield* largeObjectExists(good2.oid!))
      // still referenced by the unmigrated row: kept, and its bytes intact
      assert.isTrue(yield* largeObjectExists(shared.oid!))
      assert.strictEqual(Buffer.compare(Buffer.from(yield* readLargeObject(shared.oid!)), Buffer.from(shared.bytes!)), 0)
      assert.strictEqual(yield* dataOf(sharing.hash), shared.oid)
      // refused rows untouched
      assert.strictEqual(yield* dataOf(bad.hash), bad.oid)
      assert.isTrue(yield* largeObjectExists(bad.oid!))
      assert.strictEqual(yield* dataOf(fresh.hash), fresh.oid)
      assert.isTrue(yield* largeObjectExists(fresh.oid!))

      // nothing left to prune among the good rows: a second run frees nothing
      const again = yield* runCli([...args, "--yes"])
      assert.strictEqual(again.code, 1)
      assert.include(again.stdout, "pruned: checked 1 migrated row(s)")
      assert.include(again.stdout, "unlinked 0 large object(s)")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("unlinks an object shared by two migrated rows once both are released, exit 0", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const bytes = randomBytes(4096, 700)
      const lower = yield* insertObject({ bytes })
      // the same content under its upper-case SHA-1 and the same large object: both rows migrate
      const upper = yield* insertObject({ bytes, hash: lower.hash.toUpperCase(), dataOid: lower.oid })
      const migrated = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      const args = ["prune", ...(yield* target), "--batch-size", "1", "--deep"]

      const dry = yield* runCli(args)
      assert.strictEqual(dry.code, 0, dry.stderr)
      assert.include(dry.stdout, "would release 2 row(s) (data = NULL), would unlink 1 large object(s), would free 4.00 KiB (4096 bytes)")
      assert.include(dry.stdout, "would keep 1 large object(s)")
      assert.isTrue(yield* largeObjectExists(lower.oid!))

      const real = yield* runCli([...args, "--yes"])
      assert.strictEqual(real.code, 0, real.stderr)
      assert.include(real.stdout, "released 2 row(s) (data = NULL), unlinked 1 large object(s), freed 4.00 KiB (4096 bytes)")
      assert.include(real.stdout, "refused 0 bad, 0 not migrated")
      assert.isNull(yield* dataOf(lower.hash))
      assert.isNull(yield* dataOf(upper.hash))
      assert.isFalse(yield* largeObjectExists(lower.oid!))

      // the objects stay verifiable in S3 after the source is gone
      const verified = yield* runCli(["verify", ...(yield* target), "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "2 good, 0 bad")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("refuses bad flag values with exit 2", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const result = yield* runCli(["prune", ...(yield* target), "--batch-size", "0"])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(result.stderr, "invalid setting --batch-size: 0 is below the minimum of 1")
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("verify and prune across keyset pages", () => {
  it.live("check and prune more rows than one page holds (1000)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const n = 1050
      for (let i = 0; i < n; i++) yield* insertObject({ bytes: randomBytes(64 + (i % 50), 10_000 + i) })
      const migrated = yield* runCli(["migrate", ...(yield* target), "--commit-chunk", "500"])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      const rows = [...(yield* readRows)]
      const victim = rows[1020]!
      yield* s3.use("DeleteObject", (c) => c.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: victim.sha2! })))

      const verified = yield* runCli(["verify", ...(yield* target), "--concurrency", "16"])
      assert.strictEqual(verified.code, 1, verified.stderr)
      assert.include(verified.stdout, `verified ${n} migrated object(s)`)
      assert.include(verified.stdout, `${n - 1} good, 1 bad`)
      assert.include(verified.stdout, `BAD ${victim.hash} (oid ${victim.data}`)
      assert.include(verified.stdout, `checkpoint ${rows[n - 1]!.hash}`)

      const pruned = yield* runCli(["prune", ...(yield* target), "--concurrency", "16", "--yes"])
      assert.strictEqual(pruned.code, 1, pruned.stderr)
      assert.include(pruned.stdout, `released ${n - 1} row(s) (data = NULL), unlinked ${n - 1} large object(s)`)
      assert.include(pruned.stdout, "refused 1 bad, 0 not migrated")
      const [left] = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata`
      assert.strictEqual(Number(left!.n), 1, "only the refused row's large object is left")
      assert.strictEqual((yield* readRows).filter((r) => r.data !== null).map((r) => r.hash).join(), victim.hash)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
