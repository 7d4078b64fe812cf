// Faults survived: S3 misbehaving behind a fault-injecting proxy (500, 503 SlowDown, connection resets
// before and after the server processed the request, truncated and slow answers), PostgreSQL backends
// killed mid-run, and S3 gone for good. Real executable, real PostgreSQL and s3rver.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, type FaultRule, faults } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, assertNothingMarked } from "./support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB

const env = FaultProxy.layerWith({ seed: 42 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

/** The CLI pointed at this test's database, and at S3 through the proxy. */
const viaProxy = Effect.flatMap(FaultProxy, (proxy) => targetVia(proxy.endpoint))

/** Object keys only (64 hex digits), so the pre-flight probe is not hit. */
const objects = /\/[0-9a-f]{64}(\?|$)/

const insertMany = (n: number, size: (i: number) => number, seed: number) =>
  Effect.gen(function*() {
    const out: Array<InsertedObject> = []
    for (let i = 0; i < n; i++) out.push(yield* insertObject({ bytes: randomBytes(size(i), seed + i) }))
    return out
  })

describe("faults", () => {
  it.live("S3 errors, SlowDown, resets, truncated and slow answers: retried, slowed down, finished correct", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      const inserted = yield* insertMany(60, (i) => 1 + ((i * 733) % (40 * KiB)), 1000)
      // one object above the part size: multipart (2 parts), whose requests get faults too
      inserted.push(yield* insertObject({ bytes: randomBytes(6 * MiB + 3, 999) }))
      const rules: ReadonlyArray<FaultRule> = [
        { name: "slowdown", path: objects, count: 8, fault: faults.slowDown },
        { name: "500", path: objects, probability: 0.1, fault: faults.internalError },
        { name: "reset-before", path: objects, probability: 0.04, fault: faults.resetBefore },
        { name: "reset-after", path: objects, probability: 0.04, fault: faults.resetAfter },
        { name: "truncate", path: objects, probability: 0.04, fault: faults.truncate },
        { name: "slow", path: objects, probability: 0.04, fault: { kind: "slow", delayMs: 300 } }
      ]
      yield* proxy.setRules(rules)
      const result = yield* runCli([
        "migrate", ...(yield* viaProxy), "--retries", "10", "--upload-chunk-size", "5120", "--storer-threads", "4"
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "migrated 61 object(s)")
      assert.include(result.stderr, "S3 asked to slow down")
      for (const rule of rules) assert.isAbove(yield* proxy.fired(rule.name!), 0, `rule ${rule.name} fired`)
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a CompleteMultipartUpload whose answer is lost after the server assembled the object counts as stored", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      const big = yield* insertObject({ bytes: randomBytes(6 * MiB + 5, 4242) })
      // the first Complete reaches s3rver, which assembles the object, then the connection is cut; the
      // retried Complete finds the upload gone (s3rver answers it with an error)
      yield* proxy.setRules([{ name: "lost-complete", method: "POST", path: /uploadId=/, count: 1, fault: faults.resetAfter }])
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--upload-chunk-size", "5120", "--retries", "3"])
      assert.strictEqual(yield* proxy.fired("lost-complete"), 1)
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated([big])
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("PostgreSQL connections killed mid-run (pg_terminate_backend): retried, finished correct", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const inserted = yield* insertMany(300, (i) => 512 + i, 2000)
      let kills = 0
      const terminate = sql<{ n: bigint }>`
        SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'lo-migrate' AND pid <> pg_backend_pid()`
      const marked = sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--commit-chunk", "5", "--storer-threads", "2"], {
        onStart: (child) => {
          // once the run is past its pre-flight (rows committed), kill all its backends 4 times
          const timer = setInterval(() => {
            Effect.runPromise(marked.pipe(Effect.catch(() => Effect.succeed([{ n: 0n }])))).then(([r]) => {
              if (kills >= 4) return clearInterval(timer)
              if (Number(r!.n) < 10) return
              return Effect.runPromise(terminate).then(([k]) => {
                if (Number(k!.n) > 0) kills++
              })
            }).catch(() => undefined)
          }, 150)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isAbove(kills, 0, "backends were killed during the run")
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("S3 gone for good: ends after the retry budget with a clear error, exit 1, nothing wrongly marked", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      yield* insertMany(12, (i) => 100 + i, 3000)
      // the probe passes (the bucket was fine at the start), then every object request fails
      yield* proxy.setRules([{ name: "down", path: objects, fault: faults.internalError }])
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--retries", "3"])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: S3 PutObject [0-9a-f]{64} failed: .*InternalError/)
      assert.isAtLeast(yield* proxy.fired("down"), 3, "retried up to the budget")
      yield* assertNothingMarked
      yield* assertMarkedRowsBacked
      assert.strictEqual((yield* readRows).length, 12)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("PostgreSQL gone for good mid-run: the run ends with a clear error, exit 1, marked rows all backed; a rerun finishes", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const inserted = yield* insertMany(200, (i) => 700 + i, 4000)
      const marked = sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`
      // the database stops accepting connections (a connection limit of 0, as its owner may set), then
      // the run's sessions are terminated: every reconnect is refused from then on
      const shutOut = Effect.gen(function*() {
        yield* sql.unsafe(`ALTER DATABASE "${db.name}" WITH CONNECTION LIMIT 0`)
        yield* sql`
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'lo-migrate'`
      })
      let cut = false
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--commit-chunk", "5", "--storer-threads", "1", "--retries", "3"], {
        onStart: (child) => {
          const timer = setInterval(() => {
            if (cut) return
            Effect.runPromise(marked.pipe(Effect.catch(() => Effect.succeed([{ n: 0n }])))).then(([r]) => {
              if (cut || Number(r!.n) < 10) return
              cut = true
              clearInterval(timer)
              return Effect.runPromise(shutOut).catch((e) => console.error("shutting the database out failed", e))
            }, () => undefined)
          }, 100)
          child.on("close", () => clearInterval(timer))
        }
      })
      yield* sql.unsafe(`ALTER DATABASE "${db.name}" WITH CONNECTION LIMIT -1`)
      assert.isTrue(cut, "the database was shut mid-run")
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: PostgreSQL .* failed: too many connections for database/)
      yield* assertMarkedRowsBacked
      const done = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.isBelow(done, 200)

      const rerun = yield* runCli(["migrate", ...(yield* viaProxy)])
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))
})
