// `lo-migrate verify --profile relstorage` through the executable: inline blobs are checked too (their
// length against blob_size), and --against-source re-reads each blob's large objects (all chunks, in
// chunk_num order) and compares them with the S3 copy or the inline data.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import { runCli } from "./support/Cli.ts"
import { randomBytes, unlinkLargeObject } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlob } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]

describe("lo-migrate verify --profile relstorage", () => {
  it.live("--against-source catches a modified large object, corrupted inline data, a missing chunk", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      yield* insertBlob(1, 1, [new TextEncoder().encode("ten bytes!")])
      const inlineChunked = yield* insertBlob(1, 2, [randomBytes(300, 1), randomBytes(300, 2)])
      const single = yield* insertBlob(2, 1, [randomBytes(2000, 3)])
      const chunked = yield* insertBlob(3, 1, [randomBytes(700, 4), randomBytes(700, 5), randomBytes(700, 6)])
      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      const verify = ["verify", ...t, ...profile]

      const clean = yield* runCli([...verify, "--against-source"])
      assert.strictEqual(clean.code, 0, clean.stderr)
      assert.include(clean.stdout, "verified 4 migrated object(s)")
      assert.include(clean.stdout, "4 good, 0 bad")

      // same lengths, other bytes: the middle chunk of 3/1 and the inline copy of 1/2
      yield* sql`SELECT lo_put(${chunked.oids[1]!}, 10, ${new Uint8Array([1, 2, 3])})`
      yield* sql`UPDATE blob_state SET data = overlay(data placing '\\x000000'::bytea from 400) WHERE zoid = 1 AND tid = 2`
      const head = yield* runCli(verify)
      assert.strictEqual(head.code, 0, head.stderr)
      assert.include(head.stdout, "4 good, 0 bad", "HEAD level cannot see same-length changes")
      const report = `${yield* Effect.sync(() => NodeOs.tmpdir())}/lo-migrate-rsverify-${process.pid}-${Date.now()}.json`
      yield* Effect.addFinalizer(() => Effect.sync(() => NodeFs.rmSync(report, { force: true })))
      const deep = yield* runCli([...verify, "--against-source", "--report", report])
      assert.strictEqual(deep.code, 1, deep.stderr)
      assert.include(deep.stdout, "2 good, 2 bad")
      assert.include(
        deep.stdout,
        `BAD 1/2 (oids ${inlineChunked.oids.join(",")}, object blob_state.data): source-mismatch: large objects ${inlineChunked.oids.join(",")} (600 bytes) have SHA-256`
      )
      assert.include(deep.stdout, "the inline data has SHA-256")
      const json = JSON.parse(NodeFs.readFileSync(report, "utf8")) as { badObjects: ReadonlyArray<{ key: string; oids?: ReadonlyArray<number> }> }
      assert.deepStrictEqual(json.badObjects.map((b) => [b.key, b.oids]).sort(), [["1/2", inlineChunked.oids], ["3/1", chunked.oids]])
      assert.match(
        deep.stdout,
        new RegExp(`BAD 3/1 \\(oids ${chunked.oids.join(",")}, object blobs/0000000000000003/0000000000000001\\.blob\\): source-mismatch: large objects ${chunked.oids.join(",")} \\(2100 bytes\\) have SHA-256 [0-9a-f]{64}\\n`)
      )

      // inline data of another length fails at HEAD level; a chunk whose large object is gone is named
      yield* sql`UPDATE blob_state SET data = '\\x01'::bytea WHERE zoid = 1 AND tid = 1`
      yield* unlinkLargeObject(single.oids[0]!)
      const broken = yield* runCli(verify)
      assert.strictEqual(broken.code, 1, broken.stderr)
      assert.include(broken.stdout, "BAD 1/1 (oid ")
      assert.include(broken.stdout, "size-mismatch: the row says 10 bytes, its inline data has 1")
      const source = yield* runCli([...verify, "--against-source", "--concurrency", "1"])
      assert.strictEqual(source.code, 1, source.stderr)
      assert.include(source.stdout, `BAD 2/1 (oid ${single.oids[0]}, object blobs/0000000000000002/0000000000000001.blob): source-missing: large object ${single.oids[0]} does not exist`)
      assert.include(source.stdout, "0 good, 4 bad")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
