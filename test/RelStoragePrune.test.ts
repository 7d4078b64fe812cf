// `lo-migrate prune --profile relstorage` through the executable: a dry run changes nothing; --yes deletes
// the chunks of blobs whose copy (S3 object or inline data) verifies and unlinks their large objects,
// keeps a large object another blob still references, refuses a blob whose S3 object is corrupt and
// blobs not migrated; across databases (--dest-pg-url), with RelStorage's own delete trigger; refused
// without an index on blob_chunk(chunk) until --create-chunk-index creates it.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import {
  chunkKeys,
  createBlobChunk,
  insertBlob,
  largeObjectCount,
  largeObjectExists,
  onDatabase
} from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]

describe("lo-migrate prune --profile relstorage", () => {
  it.live("history-preserving: dry run first; --yes releases verified blobs, keeps shared and refused ones (a bad S3 object, altered inline data)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      const inline = yield* insertBlob(1, 10, [new TextEncoder().encode("small one")])
      const single = yield* insertBlob(1, 11, [randomBytes(2000, 1)])
      const tampered = yield* insertBlob(1, 12, [randomBytes(500, 8)])
      const chunked = yield* insertBlob(2, 10, [randomBytes(600, 2), randomBytes(600, 3), randomBytes(600, 4)])
      const corrupt = yield* insertBlob(3, 10, [randomBytes(1500, 5)])
      const sharedBlob = yield* insertBlob(4, 10, [randomBytes(1200, 6)])
      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, "migrated 6 object(s)")

      // after the migration: a blob sharing 4/10's large object and a new one, neither migrated; 3/10's
      // S3 object truncated; 1/12's inline copy altered (same length: only the source can tell)
      yield* sql`UPDATE blob_state SET data = overlay(data placing '\\x000000'::bytea from 10) WHERE zoid = 1 AND tid = 12`
      const shared = sharedBlob.oids[0]!
      yield* insertBlob(5, 10, [shared])
      const fresh = yield* insertBlob(6, 10, [randomBytes(100, 7)])
      const [corruptKey] = yield* sql<{ readonly s3_key: string }>`SELECT s3_key FROM blob_state WHERE zoid = 3 AND tid = 10`
      yield* s3.putObject(corruptKey!.s3_key, corrupt.bytes.slice(0, 1000))
      const keysBefore = yield* chunkKeys
      const objectsBefore = yield* largeObjectCount
      const args = ["prune", ...t, ...profile, "--batch-size", "2"]

      const dry = yield* runCli(args)
      assert.strictEqual(dry.code, 1, dry.stderr)
      assert.include(dry.stdout, "dry run (nothing changed; add --yes to prune)")
      assert.include(dry.stdout, "checked 6 migrated row(s)")
      assert.include(dry.stdout, "would release 4 row(s) (chunks deleted)")
      assert.include(dry.stdout, "would unlink 5 large object(s), would free 3.72 KiB (3809 bytes)")
      assert.include(dry.stdout, `WOULD KEEP large object ${shared}: still referenced by 5/10`)
      assert.include(dry.stdout, `REFUSED 3/10 (oid ${corrupt.oids[0]}, object ${corruptKey!.s3_key}): size-mismatch`)
      assert.include(dry.stdout, `REFUSED 5/10 (oid ${shared}): not migrated (no blob_state row); large object kept`)
      assert.include(dry.stdout, `REFUSED 6/10 (oid ${fresh.oids[0]}): not migrated (no blob_state row)`)
      assert.include(dry.stdout, `REFUSED 1/12 (oid ${tampered.oids[0]}, object blob_state.data): source-mismatch`)
      assert.include(dry.stdout, "refused 2 bad, 2 not migrated")
      assert.deepStrictEqual(yield* chunkKeys, keysBefore, "the dry run deleted no chunk")
      assert.strictEqual(yield* largeObjectCount, objectsBefore, "the dry run unlinked nothing")

      // RelStorage since 3.0 has no index on blob_chunk(chunk): the dry run says --yes would refuse
      assert.include(dry.stderr, "prune --yes will refuse: blob_chunk has no index on (chunk)")
      const refused = yield* runCli([...args, "--yes"])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, "prune refused, nothing changed: table blob_chunk has no index on (chunk)")
      // the fix: the statement, and the flag that runs it
      assert.include(refused.stderr, "\n  help: run, as the owner of blob_chunk (it does not block RelStorage's writes): " +
        "CREATE INDEX CONCURRENTLY blob_chunk_chunk_idx ON blob_chunk (chunk); or rerun prune with --create-chunk-index")
      assert.deepStrictEqual(yield* chunkKeys, keysBefore, "the refused run deleted no chunk")
      const real = yield* runCli([...args, "--yes", "--create-chunk-index"])
      assert.strictEqual(real.code, 1, real.stderr)
      assert.include(real.stdout, "pruned: checked 6 migrated row(s)")
      assert.include(real.stdout, "released 4 row(s) (chunks deleted)")
      assert.include(real.stdout, "unlinked 5 large object(s), freed 3.72 KiB (3809 bytes)")
      assert.include(real.stdout, `KEPT large object ${shared}: still referenced by 5/10`)
      assert.include(real.stdout, "REFUSED 3/10")
      assert.deepStrictEqual(yield* chunkKeys, ["1/12", "3/10", "5/10", "6/10"])
      for (const oid of [...inline.oids, ...single.oids, ...chunked.oids]) assert.isFalse(yield* largeObjectExists(oid), `oid ${oid}`)
      for (const oid of [tampered.oids[0]!, corrupt.oids[0]!, shared, fresh.oids[0]!]) assert.isTrue(yield* largeObjectExists(oid), `oid ${oid}`)
      const [state] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM blob_state`
      assert.strictEqual(Number(state!.n), 6, "blob_state is untouched")

      // rerun: only the refused blob is checked again, nothing else changes
      const again = yield* runCli([...args, "--yes"])
      assert.strictEqual(again.code, 1, again.stderr)
      assert.include(again.stdout, "checked 2 migrated row(s)")
      assert.include(again.stdout, "released 0 row(s)")
      // verify against the source: pruned blobs have nothing left to compare
      const verified = yield* runCli(["verify", ...t, ...profile, "--against-source"])
      assert.strictEqual(verified.code, 1, verified.stderr)
      assert.include(verified.stdout, "4 good, 2 bad; 4 without a large object to compare (pruned)")
      // the S3 copies of the pruned blobs are still there
      assert.isTrue(Option.isSome(yield* s3.getObject("blobs/0000000000000002/000000000000000a.blob")))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("history-free, --dest-pg-url, RelStorage's delete trigger: every verified blob pruned", () =>
    Effect.gen(function*() {
      const t = yield* target
      yield* createBlobChunk("history-free")
      const inline = yield* insertBlob(7, 100, [new TextEncoder().encode("tiny")])
      const chunked = yield* insertBlob(8, 101, [randomBytes(3000, 9), randomBytes(10, 10)])
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const args = [...t, ...profile, "--dest-pg-url", other.url]
      const migrated = yield* runCli(["migrate", ...args])
      assert.strictEqual(migrated.code, 0, migrated.stderr)

      const real = yield* runCli(["prune", ...args, "--yes", "--against-source", "--create-chunk-index"])
      assert.strictEqual(real.code, 0, real.stderr)
      assert.include(real.stdout, "released 2 row(s)")
      assert.include(real.stdout, "unlinked 3 large object(s), freed 2.94 KiB (3014 bytes)")
      assert.include(real.stdout, "refused 0 bad, 0 not migrated")
      assert.notInclude(real.stdout, "named no large object")
      assert.deepStrictEqual(yield* chunkKeys, [])
      for (const oid of [...inline.oids, ...chunked.oids]) assert.isFalse(yield* largeObjectExists(oid))
      const rows = yield* onDatabase(other.url)(Effect.gen(function*() {
        const dest = yield* SqlClient.SqlClient
        return yield* dest<{ readonly n: bigint }>`SELECT count(*) AS n FROM blob_state`
      }))
      assert.strictEqual(Number(rows[0]!.n), 2)

      const plan = yield* runCli(["plan", ...args, "--sample", "0"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      assert.match(plan.stdout, /already migrated: +2  3014 bytes/)
      assert.include(plan.stdout, "2 migrated blob(s) have no chunks left in blob_chunk (pruned)")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
