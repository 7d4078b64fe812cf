// The relstorage profile methods prune relies on, against the real PostgreSQL as the ordinary role:
// `migratedPage` gives each blob its chunks (in chunk_num order, with their lengths); `release` deletes
// a blob's chunks and unlinks their large objects only while the chunks are still the verified ones and
// the blob_state row is unchanged, and never without an index on blob_chunk(chunk).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import type { RelStorageProfile } from "../src/domain/Profile.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import * as RelStorageSource from "../src/profiles/relstorage/RelStorageSource.ts"
import { AfterCopy } from "../src/phases/AfterCopy.ts"
import { CopySource } from "../src/phases/CopySource.ts"
import { createLargeObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { chunkKeys, createBlobChunk, insertBlob, largeObjectExists } from "./support/RelStorageFixture.ts"

const profile: RelStorageProfile = { _tag: "relstorage", blobThreshold: 1024, s3Prefix: undefined, destPgUrl: undefined, consumer: undefined }
const env = RelStorageSource.layer(profile, undefined, defaultPolicy(1)).pipe(
  Layer.provideMerge(TestDatabase.layerClient),
  Layer.provideMerge(Stats.layer)
)

describe("relstorage release (prune's transaction)", () => {
  it.live("releases blobs as verified; a blob whose chunks or blob_state row changed is left alone", () =>
    Effect.gen(function*() {
      const source = yield* AfterCopy
      const copy = yield* CopySource
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk("history-preserving", { chunkIndex: true })
      yield* copy.prepare
      const a = yield* insertBlob(1, 1, [randomBytes(1500, 1), randomBytes(700, 2)])
      const b = yield* insertBlob(2, 1, [randomBytes(2000, 3)])
      const c = yield* insertBlob(3, 1, [randomBytes(3000, 4)])
      yield* sql`INSERT INTO blob_state (zoid, tid, blob_size, s3_key) VALUES
        (1, 1, 2200, 'k1'), (2, 1, 2000, 'k2'), (3, 1, 3000, 'k3')`

      const rows = yield* source.migratedPage(undefined, 10, { withData: true })
      assert.deepStrictEqual(rows.map((r) => [r.key, r.oids, r.oidSizes, r.objectKey]), [
        ["1/1", a.oids, [1500, 700], "k1"],
        ["2/1", b.oids, [2000], "k2"],
        ["3/1", c.oids, [3000], "k3"]
      ])
      // after the verification: 2/1 gets another chunk, 3/1's blob_state row points elsewhere
      const extra = { oids: [yield* createLargeObject(randomBytes(10, 5))] }
      yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (2, 1, 1, ${extra.oids[0]!})`
      yield* sql`UPDATE blob_state SET s3_key = 'elsewhere' WHERE zoid = 3`

      const done = yield* source.release(rows)
      assert.deepStrictEqual(done.released.map((r) => r.key), ["1/1"])
      assert.deepStrictEqual(done.changed.map((r) => r.key), ["2/1", "3/1"])
      // in any order (the fixture creates a blob's large objects last chunk first)
      const byOid = (x: { readonly oid: number }, y: { readonly oid: number }) => x.oid - y.oid
      assert.deepStrictEqual([...done.unlinked].sort(byOid), [{ oid: a.oids[0]!, bytes: 1500 }, { oid: a.oids[1]!, bytes: 700 }].sort(byOid))
      assert.deepStrictEqual(yield* chunkKeys, ["2/1", "3/1"])
      for (const oid of a.oids) assert.isFalse(yield* largeObjectExists(oid))
      for (const oid of [...b.oids, ...c.oids, ...extra.oids]) assert.isTrue(yield* largeObjectExists(oid))

      // released blobs are not listed for prune again, but still for verify
      assert.deepStrictEqual((yield* source.migratedPage(undefined, 10, { withData: true })).map((r) => r.key), ["2/1", "3/1"])
      const all = yield* source.migratedPage(undefined, 10, { withData: false })
      assert.deepStrictEqual(all.map((r) => [r.key, r.oid]), [["1/1", null], ["2/1", b.oids[0]!], ["3/1", c.oids[0]!]])
    }).pipe(Effect.provide(env)))

  it.live("migratedPage pages stay full when blobs without chunks are skipped", () =>
    Effect.gen(function*() {
      const source = yield* AfterCopy
      const copy = yield* CopySource
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk("history-free", { chunkIndex: true })
      yield* copy.prepare
      // 30 blob_state rows, only every third blob still has its chunk
      for (let z = 1; z <= 30; z++) {
        if (z % 3 === 0) yield* insertBlob(z, 7, [randomBytes(10, z)])
        yield* sql`INSERT INTO blob_state (zoid, tid, blob_size, data) VALUES (${z}, 7, 10, ${randomBytes(10, z)})`
      }
      const first = yield* source.migratedPage(undefined, 4, { withData: true })
      assert.deepStrictEqual(first.map((r) => r.key), ["3/7", "6/7", "9/7", "12/7"])
      const next = yield* source.migratedPage(first[3]!.key, 4, { withData: true })
      assert.deepStrictEqual(next.map((r) => r.key), ["15/7", "18/7", "21/7", "24/7"])
      const last = yield* source.migratedPage(next[3]!.key, 4, { withData: true })
      assert.deepStrictEqual(last.map((r) => r.key), ["27/7", "30/7"])
      assert.strictEqual(last[0]!.inline?.length, 10)
    }).pipe(Effect.provide(env)))

  it.live("release refuses without an index on blob_chunk(chunk): RelStorage's trigger would scan the table per deleted row", () =>
    Effect.gen(function*() {
      const source = yield* AfterCopy
      const copy = yield* CopySource
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk("history-free")
      yield* copy.prepare
      const a = yield* insertBlob(1, 1, [randomBytes(1500, 1)])
      yield* sql`INSERT INTO blob_state (zoid, tid, blob_size, s3_key) VALUES (1, 1, 1500, 'k1')`
      const rows = yield* source.migratedPage(undefined, 10, { withData: true })
      const refused = yield* Effect.flip(source.release(rows))
      assert.strictEqual(refused._tag, "PruneRefused")
      assert.include(refused.message, "CREATE INDEX CONCURRENTLY blob_chunk_chunk_idx ON blob_chunk (chunk)")
      assert.include(refused.message, "RelStorage's delete trigger")
      assert.deepStrictEqual(yield* chunkKeys, ["1/1"])
      assert.isTrue(yield* largeObjectExists(a.oids[0]!))
      // the pre-flight of a dry run only notes it; of a real run it refuses, or creates the index
      assert.include((yield* source.preparePrune({ apply: false, createIndex: false })).join(""), "prune --yes will refuse")
      assert.strictEqual((yield* Effect.flip(source.preparePrune({ apply: true, createIndex: false })))._tag, "PruneRefused")
      assert.include((yield* source.preparePrune({ apply: true, createIndex: true })).join(""), "created the index")
      const done = yield* source.release(rows)
      assert.deepStrictEqual(done.released.map((r) => r.key), ["1/1"])
      assert.isFalse(yield* largeObjectExists(a.oids[0]!))
    }).pipe(Effect.provide(env)))
})
