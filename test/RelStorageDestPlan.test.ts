// `lo-migrate plan --profile relstorage --dest-pg-url` through the executable: blob_state in another
// database is matched with blob_chunk by paging both in key order (here across several pages of 1000),
// so the counts are those of the same-database plan; migrated blobs whose chunks were pruned still count.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { createLargeObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertObjectStates, onDatabase } from "./support/RelStorageFixture.ts"
import { assertPlanFigures, assertPlanFiguresAfterRun, insertPlanDataSet } from "./support/RelStoragePlanSet.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]

describe("lo-migrate plan --profile relstorage --dest-pg-url", () => {
  it.live("counts, bytes, S3 vs inline, dangling and shared chunks as with one database; writes nothing", () =>
    Effect.gen(function*() {
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      // the data set of RelStoragePlan.test.ts, and the same figures
      const oids = yield* insertPlanDataSet
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const args = [...t, ...profile, "--dest-pg-url", other.url]

      const plan = yield* runCli(["plan", ...args, "--sample", "4"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      assertPlanFigures(plan.stdout, oids)
      assert.include(plan.stdout, "blob_state is in another database")
      const [state] = yield* onDatabase(other.url)(Effect.gen(function*() {
        const dest = yield* SqlClient.SqlClient
        return yield* dest<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      }))
      assert.isFalse(state!.present, "plan created nothing")

      const run = yield* runCli(["migrate", ...args])
      assert.strictEqual(run.code, 1, run.stderr)
      const after = yield* runCli(["migrate", ...args, "--dry-run"])
      assert.strictEqual(after.code, 0, after.stderr)
      assertPlanFiguresAfterRun(after.stdout)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("merges several pages of keys from both sides, pruned blobs before, between and after", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* target
      yield* createBlobChunk("history-preserving")
      // 2500 blobs sharing one large object of 10 bytes
      const oid = yield* createLargeObject(randomBytes(10, 8))
      yield* insertObjectStates(Array.from({ length: 2500 }, (_, i) => [i + 1, 1] as const))
      yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) SELECT g, 1, 0, ${oid} FROM generate_series(1, 2500) g`
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      // migrated: the even zoids; migrated and pruned (7 bytes each): zoid 0, 1000/0, 1000/2, 5001..5300
      yield* onDatabase(other.url)(Effect.gen(function*() {
        const dest = yield* SqlClient.SqlClient
        yield* dest`CREATE TABLE blob_state (zoid bigint NOT NULL, tid bigint NOT NULL, blob_size bigint NOT NULL,
          data bytea, s3_key text, PRIMARY KEY (zoid, tid))`
        yield* dest`INSERT INTO blob_state SELECT g, 1, 10, '\\x00000000000000000000'::bytea, NULL FROM generate_series(2, 2500, 2) g`
        yield* dest`INSERT INTO blob_state SELECT g, 1, 7, '\\x00000000000000'::bytea, NULL
          FROM (SELECT 0 AS g UNION ALL SELECT generate_series(5001, 5300)) s`
        yield* dest`INSERT INTO blob_state VALUES (1000, 0, 7, '\\x00000000000000'::bytea, NULL), (1000, 2, 7, '\\x00000000000000'::bytea, NULL)`
      }))
      const plan = yield* runCli(["plan", ...t, ...profile, "--dest-pg-url", other.url, "--sample", "1"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      assert.match(plan.stdout, /to migrate: +1250  12500 bytes/)
      assert.match(plan.stdout, /already migrated: +1553  14621 bytes/)
      assert.match(plan.stdout, /total: +2803  27121 bytes/)
      assert.include(plan.stdout, "0 blob(s), 0 bytes to S3; 1250 blob(s), 12500 bytes inline")
      assert.include(plan.stdout, "303 migrated blob(s) have no chunks left in blob_chunk (pruned)")
      assert.match(plan.stdout, /based on: 1 sampled object\(s\)/)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
