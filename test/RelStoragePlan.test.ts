// `lo-migrate plan --profile relstorage` through the executable: blobs to migrate vs already in
// blob_state, bytes (chunk lengths summed; blob_size once migrated), the split between S3 and inline at
// --blob-threshold, dangling and shared chunk oids; nothing written (no blob_state, bucket untouched).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { createLargeObject, randomBytes, unlinkLargeObject } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const chunk = (zoid: number, tid: number, num: number, oid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (${zoid}, ${tid}, ${num}, ${oid})`
  })

describe("lo-migrate plan --profile relstorage", () => {
  it.live("blobs, bytes, S3 vs inline at --blob-threshold, dangling and shared chunks; writes nothing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const t = yield* target
      yield* sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, tid bigint NOT NULL, chunk_num bigint NOT NULL,
        chunk oid NOT NULL, PRIMARY KEY (zoid, tid, chunk_num))`
      yield* chunk(1, 10, 0, yield* createLargeObject(new TextEncoder().encode("small one")))
      yield* chunk(1, 11, 0, yield* createLargeObject(randomBytes(2000, 1)))
      for (let i = 0; i < 3; i++) yield* chunk(2, 10, i, yield* createLargeObject(randomBytes(600, 2 + i)))
      const dangling = yield* createLargeObject(randomBytes(50, 6))
      yield* chunk(3, 10, 0, dangling)
      yield* unlinkLargeObject(dangling)
      const shared = yield* createLargeObject(randomBytes(100, 7))
      yield* chunk(4, 10, 0, shared)
      yield* chunk(4, 11, 0, shared)
      const args = ["--profile", "relstorage", "--blob-threshold", "1024"]

      const plan = yield* runCli(["plan", ...t, ...args, "--sample", "4"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      const out = plan.stdout
      assert.include(out, "plan for blob_chunk")
      assert.match(out, /to migrate: +6  4009 bytes \(/)
      assert.match(out, /already migrated: +0  0 bytes/)
      assert.match(out, /\n  <= 1\.00 KiB +3  209 bytes/)
      assert.match(out, /\n  <= 16\.00 KiB +2  3800 bytes/)
      assert.match(out, /\n  size NULL +1/)
      assert.include(out, "at --blob-threshold 1024: 2 blob(s), 3800 bytes to S3; 3 blob(s), 209 bytes inline")
      assert.include(out, `dangling oids:  1 (e.g. 3/10 -> oid ${dangling})`)
      assert.include(out, `oids shared by several rows (whole table): 1 oid(s) in 2 row(s) (e.g. oid ${shared}: 4/10 4/11)`)
      assert.include(out, "blob_state does not exist yet")
      assert.match(out, /based on: \d+ sampled object\(s\)/)

      // nothing was written
      const [state] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      assert.isFalse(state!.present)
      assert.deepStrictEqual(yield* s3.listKeys(), [])

      // after a run (the dangling blob fails), the migrated blobs count with their blob_size
      const run = yield* runCli(["migrate", ...t, ...args])
      assert.strictEqual(run.code, 1, run.stderr)
      const after = yield* runCli(["migrate", ...t, ...args, "--dry-run"])
      assert.strictEqual(after.code, 0, after.stderr)
      assert.match(after.stdout, /to migrate: +1  0 bytes/)
      assert.match(after.stdout, /already migrated: +5  4009 bytes/)
      assert.include(after.stdout, "0 blob(s), 0 bytes to S3; 0 blob(s), 0 bytes inline")

    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
