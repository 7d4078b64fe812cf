// `lo-migrate migrate --finalize --profile relstorage` through the executable: refused while a blob has
// no blob_state row, a migrated blob does not verify, or a row has neither data nor s3_key; then done,
// with no constraint on blob_state (zodb-pgjsonb writes it too: its inline upsert leaves an old s3_key
// next to data, so a row with both is accepted); a rerun is a no-op; also with blob_state in another
// database, where the CHECK constraint of earlier versions is dropped.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlob, onDatabase, sha256 } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]

/** blob_state's CHECK constraints: none from lo-migrate */
const checks = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly def: string }>`
    SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = to_regclass('blob_state') AND contype = 'c'`
  return rows.map((r) => r.def)
})
const finalizedLine = "Checking blob_state (every blob recorded, S3 keys as zodb-pgjsonb reads them) ... done"

describe("lo-migrate migrate --finalize --profile relstorage", () => {
  it.live("history-free: refused while unmigrated, bad or without data and s3_key; then no constraint; rerun is a no-op", () =>
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

      const rest = yield* runCli(migrate)
      assert.strictEqual(rest.code, 0, rest.stderr)
      const key = "blobs/0000000000000002/0000000000000005.blob"
      yield* s3.putObject(key, big.bytes.slice(0, 10), { metadata: { sha256: sha256(big.bytes) } })
      const bad = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(bad.code, 1, bad.stderr)
      assert.include(bad.stderr, `BAD 2/5 (oid ${big.oids[0]}, object ${key}): size-mismatch`)
      assert.include(bad.stderr, "--finalize refused")

      yield* s3.putObject(key, big.bytes, { metadata: { sha256: sha256(big.bytes) } })
      // a row with neither data nor s3_key: zodb-pgjsonb could not read it
      yield* sql`INSERT INTO blob_state (zoid, tid, blob_size) VALUES (9, 9, 0)`
      const neither = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(neither.code, 1, neither.stderr)
      assert.include(neither.stderr, "BAD 9/9 (oid NULL, object blob_state.data): missing-object: the row has neither inline data nor an object key")
      assert.include(neither.stderr, "--finalize refused")
      yield* sql`DELETE FROM blob_state WHERE zoid = 9`
      // a row with both, as zodb-pgjsonb's inline upsert leaves it: accepted (zodb-pgjsonb reads s3_key first)
      yield* sql`UPDATE blob_state SET data = '\\x01'::bytea WHERE zoid = 2`
      const done = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, finalizedLine)
      assert.deepStrictEqual(yield* checks, [], "no constraint on blob_state")
      const accepted = yield* Effect.exit(sql`INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key) VALUES (9, 9, 1, '\\x01'::bytea, 'k')`)
      assert.isTrue(Exit.isSuccess(accepted), "blob_state takes what zodb-pgjsonb writes")
      yield* sql`DELETE FROM blob_state WHERE zoid = 9`

      const again = yield* runCli([...migrate, "--finalize"])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, finalizedLine)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--dest-pg-url: the CHECK constraint of an earlier version is dropped in blob_state's database", () =>
    Effect.gen(function*() {
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      yield* insertBlob(1, 1, [new TextEncoder().encode("inline")])
      yield* insertBlob(1, 2, [randomBytes(3000, 4)])
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const migrated = yield* runCli(["migrate", ...t, ...profile, "--dest-pg-url", other.url])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      yield* onDatabase(other.url)(Effect.gen(function*() {
        const dest = yield* SqlClient.SqlClient
        yield* dest`ALTER TABLE blob_state ADD CONSTRAINT blob_state_data_xor_s3_key CHECK ((data IS NULL) <> (s3_key IS NULL))`
      }))
      const done = yield* runCli(["migrate", ...t, ...profile, "--dest-pg-url", other.url, "--finalize"])
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, finalizedLine)
      assert.include(done.stderr, "dropped CHECK constraint blob_state_data_xor_s3_key")
      assert.deepStrictEqual(yield* onDatabase(other.url)(checks), [])
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
