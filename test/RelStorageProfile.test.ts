// `--profile relstorage` end to end through the executable: RelStorage's blob_chunk (history-preserving
// and history-free layouts) into a zodb-pgjsonb style blob_state table, big blobs to S3 under
// blobs/{zoid:016x}/{tid:016x}.blob, small ones inline with no S3 request, multi-chunk blobs
// concatenated in chunk_num order.
import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { runCli } from "./support/Cli.ts"
import { randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlobBytes, readState } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const KiB = 1024
const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
describe("lo-migrate --profile relstorage", () => {
  it.live("history-preserving: small blobs inline, big ones to S3, chunks concatenated in order; rerun does nothing", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* createBlobChunk("history-preserving")
      const small = yield* insertBlobBytes(1, 10, [new TextEncoder().encode("small one")])
      const big = yield* insertBlobBytes(1, 11, [randomBytes(150 * KiB, 1)])
      const chunked = yield* insertBlobBytes(2, 10, [randomBytes(60 * KiB, 2), randomBytes(60 * KiB, 3), randomBytes(60 * KiB, 4)])
      const smallChunked = yield* insertBlobBytes(300, 5, [randomBytes(KiB, 5), randomBytes(KiB + 3, 6)])

      const args = ["migrate", ...(yield* target), "--profile", "relstorage", "--s3-prefix", "tenant1/"]
      const first = yield* runCli(args)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, "migrated 4 object(s)")
      assert.include(first.stderr, "history-preserving layout")

      const state = yield* readState
      assert.deepStrictEqual(state.map((r) => [r.zoid, r.tid, r.blob_size]), [
        ["1", "10", String(small.length)],
        ["1", "11", String(big.length)],
        ["2", "10", String(chunked.length)],
        ["300", "5", String(smallChunked.length)]
      ])
      const [s1, b1, c2, sc] = state
      assert.isNull(s1!.s3_key)
      assert.strictEqual(Buffer.compare(Buffer.from(s1!.data!), Buffer.from(small)), 0)
      assert.isNull(sc!.s3_key)
      assert.strictEqual(Buffer.compare(Buffer.from(sc!.data!), Buffer.from(smallChunked)), 0, "inline chunks concatenated")
      // s3_key as zodb-pgjsonb stores it, without the prefix; the object under prefix/s3_key
      assert.strictEqual(b1!.s3_key, "blobs/0000000000000001/000000000000000b.blob")
      assert.isNull(b1!.data)
      assert.strictEqual(c2!.s3_key, "blobs/0000000000000002/000000000000000a.blob")
      for (const [row, bytes] of [[b1!, big], [c2!, chunked]] as const) {
        const stored = Option.getOrThrow(yield* s3.getObject(`tenant1/${row.s3_key!}`))
        assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(bytes)), 0, row.s3_key!)
        assert.strictEqual(stored.metadata.sha256, sha256(bytes))
      }
      // inline blobs made no S3 object
      assert.deepStrictEqual([...(yield* s3.listKeys())].sort(), [`tenant1/${b1!.s3_key!}`, `tenant1/${c2!.s3_key!}`].sort())

      const again = yield* runCli(args)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "migrated 0 object(s)")
      assert.include(again.stdout, "4 of 4 were already migrated")

      // verify: the S3 blobs are checked (HEAD: size, sha256 metadata; --deep: the bytes), inline ones by
      // length; at --s3-prefix + s3_key
      const verifyArgs = ["verify", ...(yield* target), "--profile", "relstorage", "--s3-prefix", "tenant1"]
      const verified = yield* runCli([...verifyArgs, "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "verified 4 migrated object(s)")
      assert.include(verified.stdout, "4 good, 0 bad")
      // a truncated object and one without sha256 metadata are named
      yield* s3.putObject(`tenant1/${c2!.s3_key!}`, chunked.slice(0, 100), { metadata: { sha256: sha256(chunked) } })
      yield* s3.putObject(`tenant1/${b1!.s3_key!}`, big)
      const bad = yield* runCli(verifyArgs)
      assert.strictEqual(bad.code, 1, bad.stderr)
      assert.include(bad.stdout, "BAD 2/10")
      assert.include(bad.stdout, "size-mismatch")
      assert.include(bad.stdout, "BAD 1/11")
      assert.include(bad.stdout, "no sha256 metadata")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("history-free layout, --blob-threshold 0 sends every blob to S3; verify --against-source", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* createBlobChunk("history-free")
      const a = yield* insertBlobBytes(7, 100, [new TextEncoder().encode("tiny")])
      const b = yield* insertBlobBytes(8, 101, [randomBytes(3 * KiB, 9), randomBytes(10, 10)])
      const t = yield* target
      const result = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--blob-threshold", "0"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "migrated 2 object(s)")
      assert.include(result.stderr, "history-free layout")
      const state = yield* readState
      assert.deepStrictEqual(state.map((r) => r.s3_key), [
        "blobs/0000000000000007/0000000000000064.blob",
        "blobs/0000000000000008/0000000000000065.blob"
      ])
      assert.isTrue(state.every((r) => r.data === null))
      const stored = Option.getOrThrow(yield* s3.getObject("blobs/0000000000000008/0000000000000065.blob"))
      assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(b)), 0)
      assert.strictEqual(sha256(a), Option.getOrThrow(yield* s3.getObject(state[0]!.s3_key!)).metadata.sha256)

      const checked = yield* runCli(["verify", ...t, "--profile", "relstorage", "--against-source"])
      assert.strictEqual(checked.code, 0, checked.stderr)
      assert.include(checked.stdout, "2 good, 0 bad")
      const bad = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--blob-threshold", "-1"])
      assert.strictEqual(bad.code, 2, bad.stderr)
      const wrong = yield* runCli(["migrate", ...t, "--blob-threshold", "10"])
      assert.strictEqual(wrong.code, 2, wrong.stderr)
      assert.include(wrong.stderr, "--blob-threshold: is only used with --profile relstorage")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--dest-pg-url: blob_state in another database; rerun and verify read it there", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createBlobChunk("history-preserving")
      yield* insertBlobBytes(1, 1, [new TextEncoder().encode("inline")])
      const big = yield* insertBlobBytes(1, 2, [randomBytes(2 * KiB, 11), randomBytes(2 * KiB, 12)])
      yield* insertBlobBytes(2, 1, [randomBytes(5 * KiB, 13)])
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const args = [...(yield* target), "--profile", "relstorage", "--blob-threshold", "1024", "--dest-pg-url", other.url]
      const first = yield* runCli(["migrate", ...args])
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, "migrated 3 object(s)")
      const [local] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      assert.isFalse(local!.present, "nothing created next to blob_chunk")
      const rows = yield* Effect.gen(function*() {
        const dest = yield* SqlClient.SqlClient
        return yield* dest<{ readonly zoid: string; readonly tid: string; readonly inline: boolean; readonly s3_key: string | null }>`
          SELECT zoid::text, tid::text, data IS NOT NULL AS inline, s3_key FROM blob_state ORDER BY zoid, tid`
      }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(other.url), maxConnections: 1 })))
      assert.deepStrictEqual(rows.map((r) => [r.zoid, r.tid, r.inline, r.s3_key]), [
        ["1", "1", true, null],
        ["1", "2", false, "blobs/0000000000000001/0000000000000002.blob"],
        ["2", "1", false, "blobs/0000000000000002/0000000000000001.blob"]
      ])
      const stored = Option.getOrThrow(yield* s3.getObject("blobs/0000000000000001/0000000000000002.blob"))
      assert.strictEqual(Buffer.compare(Buffer.from(stored.bytes), Buffer.from(big)), 0)

      const again = yield* runCli(["migrate", ...args])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "migrated 0 object(s)")
      assert.include(again.stdout, "3 of 3 were already migrated")
      const verified = yield* runCli(["verify", ...args])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "verified 3 migrated object(s)")

      const unreachable = yield* runCli(["migrate", ...args.slice(0, -1), other.url.replace(/\/[^/]*$/, "/no_such_database")])
      assert.strictEqual(unreachable.code, 2, unreachable.stderr)
      assert.include(unreachable.stderr, "PostgreSQL (--dest-pg-url): cannot connect to the blob_state database")
      assert.include(unreachable.stderr, "help: check the database name in --dest-pg-url")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--shard: two processes at once record every blob once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk("history-free")
      for (let z = 1; z <= 12; z++) yield* insertBlobBytes(z, 1000 + z, [randomBytes(200 * z, 20 + z)])
      const t = yield* target
      const runs = yield* Effect.all(
        ["0/2", "1/2"].map((shard) => runCli(["migrate", ...t, "--profile", "relstorage", "--blob-threshold", "1000", "--shard", shard])),
        { concurrency: "unbounded" }
      )
      const counts = runs.map((r) => {
        assert.strictEqual(r.code, 0, r.stderr)
        return Number(/migrated (\d+) object\(s\)/.exec(r.stdout)![1])
      })
      assert.strictEqual(counts[0]! + counts[1]!, 12)
      const [n] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM blob_state`
      assert.strictEqual(Number(n!.n), 12)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
