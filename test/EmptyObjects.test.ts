// A 0-byte large object migrates like any other: through the deferred mode (staged as an empty file,
// uploaded by upload-blobs from a file payload) and through the normal pipeline with --in-mem-max 0
// (there an empty object still stays in memory, 0 <= 0; the empty file payload itself is covered by
// test/Payload.test.ts). S3 then holds an empty object under the SHA-256 of no bytes, its row marked.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { manifestEntries } from "./support/Deferred.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows, sha256Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

const emptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/** an empty object among ordinary ones, so the run proves the others are unaffected */
const insertWithEmpty = Effect.gen(function*() {
  const empty = yield* insertObject({ bytes: new Uint8Array(0), mime: "text/plain" })
  const others = [yield* insertObject({ bytes: randomBytes(3000, 71) }), yield* insertObject({ bytes: randomBytes(10, 72) })]
  return { empty, all: [empty, ...others] }
})

const assertMigrated = (objects: ReadonlyArray<InsertedObject>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const rows = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
    for (const o of objects) {
      assert.strictEqual(rows.get(o.hash), o.sha256, `row ${o.hash} marked`)
      const stored = yield* s3.getObject(o.sha256!)
      assert.isTrue(Option.isSome(stored), `${o.sha256} in S3`)
      assert.deepStrictEqual(Buffer.from(Option.getOrThrow(stored).bytes), Buffer.from(o.bytes!))
    }
  })

describe("0-byte large objects", () => {
  it.live("deferred: staged as an empty file, then upload-blobs stores it under the empty SHA-256 and marks its row", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const { empty, all } = yield* insertWithEmpty
      assert.strictEqual(empty.sha256, emptySha256)
      const dir = yield* scopedTempDir("empty-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staging = NodePath.join(dir, "staged")
      const staged = yield* runCli(["migrate", ...(yield* target), "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const line = manifestEntries(manifest).find((e) => e.rowKey === empty.hash)
      assert.isDefined(line)
      assert.strictEqual(line!.size, 0)
      assert.strictEqual(NodeFs.statSync(line!.stagedPath).size, 0)

      const up = yield* runCli(["upload-blobs", manifest, ...(yield* target)])
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 3 object(s)")
      yield* assertMigrated(all)
      const stored = Option.getOrThrow(yield* (yield* TestS3).getObject(emptySha256))
      assert.strictEqual(stored.contentLength, 0)
      assert.strictEqual(stored.contentType, "text/plain")
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [], "staged files removed once marked")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("normal run with --in-mem-max 0: the empty object is stored and its row marked", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const { all } = yield* insertWithEmpty
      const result = yield* runCli(["migrate", ...(yield* target), "--in-mem-max", "0"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "migrated 3 object(s)")
      yield* assertMigrated(all)
      assert.strictEqual(sha256Hex(new Uint8Array(0)), emptySha256)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
