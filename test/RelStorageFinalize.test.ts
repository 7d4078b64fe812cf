// `lo-migrate migrate --finalize --profile relstorage` through the executable: refused while a blob has
// no blob_state row or a migrated blob does not verify; then blob_state gets the CHECK constraint that
// each blob is either inline or in S3; a rerun is a no-op; also with blob_state in another database.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlob, onDatabase, sha256 } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]

const hasConstraint = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly def: string }>`
    SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE conrelid = to_regclass('blob_state') AND conname = 'blob_state_data_xor_s3_key'`
  return rows[0]?.def
})

describe("lo-migrate migrate --finalize --profile relstorage", () => {
  it.live("history-free: refused while unmigrated or bad, then the CHECK constraint; rerun is a no-op", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const t = yield* target
      yield* createBlobChunk("history-free")
      yield* insertBlob(1, 5, [new TextEncoder().encode("inline")])
      const big = yield* insertBlob(2, 5, [randomBytes(2000, 1)])
      yield* insertBlob(3, 5, [randomBytes(1500, 2), randomBytes(10, 3)])
      const migrate = ["migrate", ...t, ...profile]

      const partial = yield* runCli([...migrate, "--limit", "1", "--finalize"])
      assert.strictEqual(partial.code, 2, partial.stderr)
      assert.include(partial.stderr, "2 blob(s) of blob_chunk have no blob_state row (e.g. 2/5 (oid ")
      assert.isUndefined(yield* hasConstraint)

      const rest = yield* runCli(migrate)
      assert.strictEqual(rest.code, 0, rest.stderr)
      const key = "blobs/0000000000000002/0000000000000005.blob"
      yield* s3.putObject(key, big.bytes.slice(0, 10), { metadata: { sha256: sha256(big.bytes) } })
      const bad = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(bad.code, 1, bad.stderr)
      assert.include(bad.stderr, `BAD 2/5 (oid ${big.oids[0]}, object ${key}): size-mismatch`)
      assert.include(bad.stderr, "--finalize refused")
      assert.isUndefined(yield* hasConstraint)

      yield* s3.putObject(key, big.bytes, { metadata: { sha256: sha256(big.bytes) } })
      // a row with both data and s3_key verifies (its S3 object is good) but cannot take the constraint
      yield* sql`UPDATE blob_state SET data = '\\x01'::bytea WHERE zoid = 2`
      const both = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(both.code, 2, both.stderr)
      assert.include(both.stderr, "1 row(s) have both or neither of data and s3_key (e.g. 2/5 (both))")
      assert.isUndefined(yield* hasConstraint)
      yield* sql`UPDATE blob_state SET data = NULL WHERE zoid = 2`
      const done = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, "Adding CHECK constraint (data or s3_key) ... done")
      assert.include(yield* hasConstraint ?? "", "(data IS NULL) <> (s3_key IS NULL)")
      const rejected = yield* Effect.exit(sql`INSERT INTO blob_state (zoid, tid, blob_size) VALUES (9, 9, 0)`)
      assert.isTrue(Exit.isFailure(rejected), "a row with neither data nor s3_key is refused now")

      const again = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "Adding CHECK constraint (data or s3_key) ... done")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--dest-pg-url: the constraint goes to blob_state's database", () =>
    Effect.gen(function*() {
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      yield* insertBlob(1, 1, [new TextEncoder().encode("inline")])
      yield* insertBlob(1, 2, [randomBytes(3000, 4)])
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const done = yield* runCli(["migrate", ...t, ...profile, "--dest-pg-url", other.url, "--finalize"])
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, "Adding CHECK constraint (data or s3_key) ... done")
      assert.isTrue(Option.isSome(Option.fromUndefinedOr(yield* onDatabase(other.url)(hasConstraint))))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
