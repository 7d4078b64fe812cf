// A PostgreSQL server that stops answering never hangs the run: with the network path frozen mid-run
// (bytes held both ways, sockets open), each session that owes an answer is dropped after --pg-timeout
// and its statement retried on a fresh session; a path frozen for good ends the run by itself; and a
// second SIGINT ends the process within 2 seconds whatever is in flight. Before, the process was still
// alive after the second SIGINT.
// Real executable and PostgreSQL, with a TCP proxy in front of it that freezes; s3rver.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { assertNoTempFiles, endsWithin, markedCount, runnerOf, whenMarked } from "./support/RunControl.ts"
import { TestS3 } from "./support/S3.ts"
import * as TcpProxy from "./support/TcpProxy.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, assertRerunFinishes, freshTempDir } from "./support/Verify.ts"

const env = FaultProxy.layerWith({ seed: 11 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))
const objects = /\/[0-9a-f]{64}(\?|$)/

const insertMany = (n: number, seed: number) =>
  Effect.gen(function*() {
    const out: Array<InsertedObject> = []
    for (let i = 0; i < n; i++) out.push(yield* insertObject({ bytes: randomBytes(i % 10 === 0 ? 4000 + i : 300 + i, seed + i) }))
    return out
  })

/** The CLI's flags: PostgreSQL through `pg`, S3 through the (slowing) fault proxy. */
const flagsVia = (pg: TcpProxy.TcpProxy, tmp: string) =>
  Effect.gen(function*() {
    const db = yield* TestDatabase
    const s3 = yield* TestS3
    const proxy = yield* FaultProxy
    // every object PUT is held 30 ms, so that the run is still going when the path freezes
    yield* proxy.setRules([{ name: "slow", method: "PUT", path: objects, fault: { kind: "slow", delayMs: 30 } }])
    return [
      "migrate", "--pg-url", pg.via(db.url), "--s3-url", proxy.endpoint, "--access-key", s3.accessKey,
      "--secret-key", s3.secretKey, "--bucket", s3.bucket, "--pg-timeout", "2", "--retries", "3",
      "--commit-chunk", "5", "--storer-threads", "2", "--in-mem-max", "2", "--temp-dir", tmp
    ]
  })

describe("a PostgreSQL server that stops answering", () => {
  it.live("the run lock's session frozen on the network while its backend lives on, holding the lock: the run ends that backend of its own, takes the lock again and finishes", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(400, 500)
      const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
      const lockSession = sql<{ pid: number; port: number }>`
        SELECT l.pid, a.client_port AS port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`
      const frozen = { pid: 0 }
      const control = whenMarked(10, yield* runnerOf, () =>
        Effect.gen(function*() {
          const [held] = yield* lockSession
          frozen.pid = held!.pid
          assert.isTrue(yield* pg.freezeSession(held!.port))
        }).pipe(Effect.orDie))
      const flags = yield* flagsVia(pg, tmp)
      // 100 ms per PUT (2 storers: about 20 s for 400 objects): the run outlasts noticing the lost session (~9 s)
      yield* (yield* FaultProxy).setRules([{ name: "slow", method: "PUT", path: objects, fault: { kind: "slow", delayMs: 100 } }])
      const result = yield* endsWithin("90 seconds", runCli(flags, { onStart: control.onStart }))
      assert.isTrue(control.state.fired, "the lock's session froze mid-run")
      assert.isUndefined(control.state.error)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stderr, /still held by this run's lost session \(pid \d+/)
      assert.include(result.stderr, "lock taken again")
      assert.include(result.stdout, "migrated 400 object(s)")
      const gone = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${frozen.pid}`
      assert.strictEqual(gone[0]!.n, 0, "the frozen session's backend was ended")
      yield* assertAllMigrated(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the first contact's connection reset twice by the network: tried again (not exit 2), and the run finishes", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(20, 400)
      const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
      yield* pg.onStatement({ pattern: /^SELECT 1$/, action: "reset", count: 2 })
      const result = yield* endsWithin("60 seconds", runCli(yield* flagsVia(pg, tmp)))
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(yield* pg.acted, 2)
      yield* assertAllMigrated(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("sessions frozen mid-run (new ones pass): each is dropped after --pg-timeout, its statement retried on a fresh one; the run finishes", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(200, 100)
      const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
      const control = whenMarked(10, yield* runnerOf, () => pg.freeze())
      const result = yield* endsWithin("90 seconds", runCli(yield* flagsVia(pg, tmp), { onStart: control.onStart }))
      assert.isTrue(control.state.fired, "the path froze mid-run")
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "migrated 200 object(s)")
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
      yield* assertNoTempFiles(tmp)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the path frozen for good (new sessions too): the run ends by itself, exit 1, naming the lost session; a rerun finishes", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const tmp = yield* freshTempDir
      yield* createNice2Schema({ withSha2Column: true })
      const inserted = yield* insertMany(200, 200)
      const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
      const control = whenMarked(10, yield* runnerOf, () => pg.freeze({ freezeNew: true }))
      const result = yield* endsWithin("120 seconds", runCli(yield* flagsVia(pg, tmp), { onStart: control.onStart }))
      assert.isTrue(control.state.fired, "the path froze mid-run")
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: (PostgreSQL .* failed|lost the run lock).*(sent nothing for \d+ s|timeout|timed out)/i)
      yield* assertMarkedRowsBacked
      yield* assertNoTempFiles(tmp)
      yield* pg.thaw
      yield* assertRerunFinishes(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))

  for (const first of ["SIGINT", "SIGTERM"] as const) {
    it.live(`the path frozen, then ${first} twice: the process is gone within 2 s of the second signal (exit 130), no temp file left`, () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const sql = yield* SqlClient.SqlClient
        const tmp = yield* freshTempDir
        yield* createNice2Schema({ withSha2Column: true })
        const inserted = yield* insertMany(200, 300)
        const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
        const timing = { second: 0, exited: 0 }
        const run = yield* runnerOf
        const control = whenMarked(10, run, (child) =>
          Effect.gen(function*() {
            yield* pg.freeze({ freezeNew: true })
            // the first signal asks for a graceful stop, which cannot commit on a frozen path
            yield* Effect.sleep("300 millis")
            child.kill(first)
            yield* Effect.sleep("1 second")
            timing.second = Date.now()
            child.kill(first)
          }))
        const result = yield* endsWithin(
          "60 seconds",
          runCli(yield* flagsVia(pg, tmp), {
            onStart: (child) => {
              control.onStart(child)
              child.on("exit", () => (timing.exited = Date.now()))
            }
          })
        )
        assert.isTrue(control.state.fired, "the path froze mid-run")
        assert.isAbove(timing.second, 0, "the second signal was sent")
        assert.isBelow(timing.exited - timing.second, 2000, `gone ${timing.exited - timing.second} ms after the second signal`)
        assert.strictEqual(result.code, 130, result.stderr)
        yield* assertNoTempFiles(tmp)
        yield* pg.thaw
        yield* assertMarkedRowsBacked
        assert.isBelow(yield* markedCount, 200)
        yield* assertRerunFinishes(inserted)
        void sql
        void readRows
      }).pipe(Effect.scoped, Effect.provide(env)))
  }
})
