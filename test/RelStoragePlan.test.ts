// `lo-migrate plan --profile relstorage` through the executable: blobs to migrate vs already in
// blob_state, bytes (chunk lengths summed; blob_size once migrated), the split between S3 and inline at
// --blob-threshold, dangling and shared chunk oids; nothing written (no blob_state, bucket untouched).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk } from "./support/RelStorageFixture.ts"
import { assertPlanFigures, assertPlanFiguresAfterRun, insertPlanDataSet } from "./support/RelStoragePlanSet.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("lo-migrate plan --profile relstorage", () => {
  it.live("blobs, bytes, S3 vs inline at --blob-threshold, dangling and shared chunks; writes nothing", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      const oids = yield* insertPlanDataSet
      const args = ["--profile", "relstorage", "--blob-threshold", "1024"]

      const plan = yield* runCli(["plan", ...t, ...args, "--sample", "4"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      assert.include(plan.stdout, "plan for blob_chunk")
      assertPlanFigures(plan.stdout, oids)

      // nothing was written
      const [state] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      assert.isFalse(state!.present)
      assert.deepStrictEqual(yield* s3.listKeys(), [])

      // after a run (the dangling blob fails), the migrated blobs count with their blob_size
      const run = yield* runCli(["migrate", ...t, ...args])
      assert.strictEqual(run.code, 1, run.stderr)
      const after = yield* runCli(["migrate", ...t, ...args, "--dry-run"])
      assert.strictEqual(after.code, 0, after.stderr)
      assertPlanFiguresAfterRun(after.stdout)

    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
