// The other profiles and the deferred mode end to end through the executable against a real Ceph RGW:
// --profile table (keys from a template, a multipart object), migrate --deferred-blobs + upload-blobs,
// --profile relstorage (multi-chunk blobs concatenated, inline blobs), verify at every level, and
// relstorage's prune. Every check reads the bytes back from RGW.
import { assert, beforeAll, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "../support/Cli.ts"
import { createDocs, type Doc, docsArgs, sameBytes } from "../support/DocsTable.ts"
import { randomBytes, sha256Hex } from "../support/Nice2Fixture.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { createBlobChunk, insertBlobBytes, largeObjectCount, readState } from "../support/RelStorageFixture.ts"
import { awaitRgw, describeRgw, TestRgw } from "../support/Rgw.ts"
import { TestS3 } from "../support/S3.ts"
import { target } from "../support/Target.ts"
import { scopedTempDir } from "../support/TempDir.ts"

const KiB = 1024
const MiB = 1024 * KiB

const env = Layer.mergeAll(TestDatabase.layerClient, TestRgw.layer)

/** One doc per size, named `doc <seed>-<i>`. */
const createSizedDocs = (sizes: ReadonlyArray<number>, seed: number) =>
  createDocs(sizes.length, seed, { names: (i) => `doc ${seed}-${i}`, size: (i) => sizes[i]! })

/** Every doc is marked with its SHA-256, and RGW holds its exact bytes and content type under its key. */
const assertDocsMigrated = (docs: ReadonlyArray<Doc>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const s3 = yield* TestS3
    const rows = yield* sql<{ readonly tenant: number; readonly name: string; readonly sha: string | null }>`
      SELECT tenant, name, sha256::text AS sha FROM docs`
    const marked = new Map(rows.map((r) => [`${r.tenant}/${r.name}`, r.sha]))
    for (const d of docs) {
      assert.strictEqual(marked.get(`${d.tenant}/${d.name}`), d.sha256, `sha256 of ${d.name}`)
      const stored = Option.getOrThrow(yield* s3.getObject(`docs/${d.tenant}/${d.name}/${d.sha256}`))
      assert.isTrue(sameBytes(stored.bytes, d.bytes), `bytes of ${d.name}`)
      assert.strictEqual(stored.contentType, d.mime ?? "application/octet-stream")
      assert.strictEqual(stored.metadata.sha256, d.sha256)
    }
  })

describeRgw("against Ceph RGW: --profile table, deferred uploads, --profile relstorage", () => {
  beforeAll(async () => {
    await awaitRgw()
  }, 200_000)

  it.live("--profile table: migrate (a multipart object among them), rerun, verify --deep and --against-source; then a deferred run and upload-blobs", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const docs = yield* createSizedDocs([0, 10, 900, 40 * KiB, 2 * MiB + 3, 6 * MiB + 1], 1)
      const first = yield* runCli(["migrate", ...(yield* target), ...docsArgs, "--upload-chunk-size", "5120"])
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, `migrated ${docs.length} object(s)`)
      yield* assertDocsMigrated(docs)
      const again = yield* runCli(["migrate", ...(yield* target), ...docsArgs])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, `${docs.length} of ${docs.length} were already migrated`)
      for (const level of ["--deep", "--against-source"]) {
        const verified = yield* runCli(["verify", ...(yield* target), ...docsArgs, level])
        assert.strictEqual(verified.code, 0, `${level}: ${verified.stderr}`)
        assert.include(verified.stdout, `${docs.length} good, 0 bad`)
      }

      // new rows, staged without S3 (deferred), then uploaded by upload-blobs
      const more = yield* createSizedDocs([5, 3000, 1 * MiB + 17, 7 * MiB], 100)
      const dir = yield* scopedTempDir("rgw-deferred-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staging = NodePath.join(dir, "staged")
      const staged = yield* runCli(["migrate", ...(yield* target), ...docsArgs, "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stdout, `staged ${more.length} object(s)`)
      assert.lengthOf(yield* s3.listKeys(), docs.length, "the staging run wrote nothing to RGW")
      const upload = yield* runCli(["upload-blobs", manifest, ...(yield* target), ...docsArgs, "--upload-chunk-size", "5120"])
      assert.strictEqual(upload.code, 0, upload.stderr)
      assert.include(upload.stdout, `uploaded ${more.length} object(s)`)
      yield* assertDocsMigrated([...docs, ...more])
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [], "staged files removed once their rows are marked")
      const all = yield* runCli(["verify", ...(yield* target), ...docsArgs, "--deep"])
      assert.strictEqual(all.code, 0, all.stderr)
      assert.include(all.stdout, `${docs.length + more.length} good, 0 bad`)
      assert.lengthOf(yield* s3.listKeys(), docs.length + more.length)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--profile relstorage: multi-chunk blobs concatenated, inline ones in blob_state; verify --deep and --against-source; prune", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* createBlobChunk("history-preserving")
      const blobs = new Map([
        ["1/10", yield* insertBlobBytes(1, 10, [new TextEncoder().encode("small one")])],
        ["1/11", yield* insertBlobBytes(1, 11, [randomBytes(150 * KiB, 1)])],
        ["2/10", yield* insertBlobBytes(2, 10, [randomBytes(3 * MiB, 2), randomBytes(3 * MiB, 3), randomBytes(7, 4)])],
        ["3/5", yield* insertBlobBytes(3, 5, [randomBytes(KiB, 5), randomBytes(KiB + 3, 6)])]
      ])
      const profile = ["--profile", "relstorage", "--s3-prefix", "tenant1/"]
      const migrated = yield* runCli(["migrate", ...(yield* target), ...profile, "--upload-chunk-size", "5120"])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, "migrated 4 object(s)")
      const state = yield* readState
      assert.lengthOf(state, 4)
      const inS3: Array<string> = []
      for (const r of state) {
        const bytes = blobs.get(`${r.zoid}/${r.tid}`)!
        assert.strictEqual(r.blob_size, String(bytes.length))
        if (r.s3_key === null) {
          assert.isTrue(sameBytes(r.data!, bytes), `inline ${r.zoid}/${r.tid}`)
          continue
        }
        // s3_key without the prefix, as zodb-pgjsonb stores it; the object under tenant1/
        inS3.push(`tenant1/${r.s3_key}`)
        const stored = Option.getOrThrow(yield* s3.getObject(`tenant1/${r.s3_key}`))
        assert.isTrue(sameBytes(stored.bytes, bytes), `bytes of ${r.s3_key}`)
        assert.strictEqual(stored.metadata.sha256, sha256Hex(bytes))
      }
      assert.deepStrictEqual(inS3.sort(), [
        "tenant1/blobs/0000000000000001/000000000000000b.blob",
        "tenant1/blobs/0000000000000002/000000000000000a.blob"
      ])
      assert.deepStrictEqual([...(yield* s3.listKeys())].sort(), inS3)
      for (const level of ["--deep", "--against-source"]) {
        const verified = yield* runCli(["verify", ...(yield* target), ...profile, level])
        assert.strictEqual(verified.code, 0, `${level}: ${verified.stderr}`)
        assert.include(verified.stdout, "4 good, 0 bad")
      }
      const before = yield* largeObjectCount
      const pruned = yield* runCli(["prune", ...(yield* target), ...profile, "--yes", "--create-chunk-index"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.include(pruned.stdout, "released 4 row(s)")
      assert.strictEqual(yield* largeObjectCount, 0, `all ${before} large objects unlinked`)
      // the copies stay: in RGW and inline
      const after = yield* runCli(["verify", ...(yield* target), ...profile, "--deep"])
      assert.strictEqual(after.code, 0, after.stderr)
      assert.include(after.stdout, "4 good, 0 bad")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
