// A stage that fails for good ends the run within seconds: exit 1, the statement that failed and its
// error named, every marked row backed by S3, no temp file left, and a rerun (once the cause is gone)
// finishes the job. Before, a committer that could commit nothing left the stages above it waiting on
// full queues and the memory budget for ever, silently.
// Real executable, real PostgreSQL (faults made with the server's own means: constraints, triggers,
// renamed columns, connection limits) and s3rver behind a proxy that slows the PUTs down so that the
// run is still going when the fault comes.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { assertNoTempFiles, endsWithin, runnerOf, whenMarked } from "./support/RunControl.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertMarkedRowsBacked, assertRerunFinishes, freshTempDir } from "./support/Verify.ts"

const env = FaultProxy.layerWith({ seed: 7 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

/** Object PUTs only (64 hex digits), so the pre-flight probe is not slowed. */
const objects = /\/[0-9a-f]{64}(\?|$)/

const insertMany = (n: number, seed: number) =>
  Effect.gen(function*() {
    const out: Array<InsertedObject> = []
    // a few above --in-mem-max, so temp files are in flight when the run ends
    for (let i = 0; i < n; i++) out.push(yield* insertObject({ bytes: randomBytes(i % 10 === 0 ? 3000 + i : 200 + i, seed + i) }))
    return out
  })

/** The run, slowed down (each object PUT held 40 ms) so that the fault lands mid-run. */
const slowRun = (extra: ReadonlyArray<string>, tmp: string, onStart?: Parameters<typeof runCli>[1]) =>
  Effect.gen(function*() {
    const proxy = yield* FaultProxy
    yield* proxy.setRules([{ name: "slow", method: "PUT", path: objects, fault: { kind: "slow", delayMs: 40 } }])
    return yield* endsWithin(
      "60 seconds",
      runCli([
        "migrate", ...(yield* targetVia(proxy.endpoint)),
        "--commit-chunk", "5", "--storer-threads", "2", "--retries", "3", "--in-mem-max", "2", "--temp-dir", tmp,
        ...extra
      ], onStart)
    )
  })

describe("a stage that fails for good ends the run", () => {
  it.live("commits refused for good (a CHECK constraint): exit 1 at once, the statement and error named", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(120, 100)
      // as a missing grant, a read-only replica or a full disk would: every UPDATE fails, never transiently
      yield* sql`ALTER TABLE _nice_binary ADD CONSTRAINT no_sha2_yet CHECK (sha2 IS NULL)`
      // small queues: the stages above the committers fill them and wait
      const result = yield* slowRun(["--receiver-queue", "8", "--storer-queue", "4", "--committer-queue", "8"], tmp)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: PostgreSQL record sha2 failed: .*no_sha2_yet/)
      assert.isBelow(result.elapsedMs, 30_000)
      assert.deepStrictEqual((yield* readRows).filter((r) => r.sha2 !== null), [])
      yield* assertNoTempFiles(tmp)

      yield* sql`ALTER TABLE _nice_binary DROP CONSTRAINT no_sha2_yet`
      yield* assertRerunFinishes(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("listing refused for good mid-run (a column renamed under it): exit 1, marked rows backed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      // more than one page (1024 rows), so the observer lists again after the fault
      const inserted: Array<InsertedObject> = []
      for (let i = 0; i < 1100; i++) inserted.push(yield* insertObject({ bytes: randomBytes(16 + (i % 50), 5000 + i) }))
      const control = whenMarked(10, yield* runnerOf, () => sql`ALTER TABLE _nice_binary RENAME COLUMN mime_type TO mime`.pipe(Effect.asVoid))
      const result = yield* slowRun(["--receiver-queue", "64", "--storer-queue", "16"], tmp, { onStart: control.onStart })
      yield* sql`ALTER TABLE _nice_binary RENAME COLUMN mime TO mime_type`
      assert.isTrue(control.state.fired, "the column was renamed mid-run")
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: PostgreSQL list rows failed: .*mime_type/)
      yield* assertMarkedRowsBacked
      yield* assertNoTempFiles(tmp)
      yield* assertRerunFinishes(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the watermark write refused for good: exit 1 naming it, instead of a warning and a run without a resume point", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(150, 200)
      yield* sql`CREATE TABLE lo_migrate_watermark (
        table_name text PRIMARY KEY, key text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`
      yield* sql.unsafe(`CREATE FUNCTION refuse_watermark() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'watermark writes are refused here'; END $$`)
      yield* sql`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON lo_migrate_watermark FOR EACH ROW EXECUTE FUNCTION refuse_watermark()`
      const result = yield* slowRun([], tmp)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: PostgreSQL record the watermark failed: .*watermark writes are refused here/)
      const marked = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.isBelow(marked, 150, "the run ended before the end of the table")
      yield* assertMarkedRowsBacked
      yield* assertNoTempFiles(tmp)

      yield* sql`DROP TRIGGER refuse ON lo_migrate_watermark`
      yield* assertRerunFinishes(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("every session lost for good, the run lock's too (no new session allowed): exit 1, never a run without its lock", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(300, 300)
      // the database takes no new session, then every session of the run is terminated (the lock's
      // first): the lock cannot be taken again, nor anything else be done
      const control = whenMarked(10, yield* runnerOf, () =>
        Effect.gen(function*() {
          yield* sql.unsafe(`ALTER DATABASE "${db.name}" WITH CONNECTION LIMIT 0`)
          yield* sql`
            SELECT pg_terminate_backend(l.pid) FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()`
          yield* sql`
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'lo-migrate' AND pid <> pg_backend_pid()`
        }))
      const result = yield* slowRun([], tmp, { onStart: control.onStart })
      yield* sql.unsafe(`ALTER DATABASE "${db.name}" WITH CONNECTION LIMIT -1`)
      assert.isTrue(control.state.fired, "the sessions were terminated mid-run")
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: (lost the run lock of _nice_binary and could not take it again|PostgreSQL .* failed): .*too many connections/)
      assert.isBelow(result.elapsedMs, 45_000)
      yield* assertMarkedRowsBacked
      yield* assertNoTempFiles(tmp)
      yield* assertRerunFinishes(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
