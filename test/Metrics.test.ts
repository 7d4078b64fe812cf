// Prometheus /metrics: the exposition text as a pure function, and a real HTTP GET against the
// executable while a run is held in the middle (a row lock makes the committers wait).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { createServer } from "node:net"
import { render } from "../src/observability/Metrics.ts"
import type { StatsSnapshot } from "../src/core/Stats.ts"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** The value of one sample line, e.g. `lo_migrate_objects_total{stage="storer"}`. */
const sample = (text: string, series: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      srv.close(() => resolve(port))
    })
  })
)

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    return { status: res.status, type: res.headers.get("content-type"), text: await res.text() }
  })

describe("metrics", () => {
  it("render: counters and gauges per stage and queue", () => {
    const s: StatsSnapshot = {
      at: 2_000_000,
      startedAt: 1_000_000,
      processed: { observer: 10, receiver: 9, storer: 8, committer: 7 },
      bytes: { received: 900, stored: 800, committed: 700 },
      failed: 1,
      retries: 2,
      remaining: 11,
      total: 20,
      queues: [{ name: "receive", used: 1, capacity: 8192 }, { name: "store", used: 0, capacity: 1024 }]
    }
    const text = render(s)
    assert.include(text, "# TYPE lo_migrate_objects_total counter")
    assert.strictEqual(sample(text, `lo_migrate_objects_total{stage="observer"}`), 10)
    assert.strictEqual(sample(text, `lo_migrate_objects_total{stage="committer"}`), 7)
    assert.strictEqual(sample(text, `lo_migrate_bytes_total{stage="storer"}`), 800)
    assert.strictEqual(sample(text, "lo_migrate_failed_rows_total"), 1)
    assert.strictEqual(sample(text, "lo_migrate_retries_total"), 2)
    assert.strictEqual(sample(text, `lo_migrate_queue_used{queue="receive"}`), 1)
    assert.strictEqual(sample(text, `lo_migrate_queue_capacity{queue="store"}`), 1024)
    assert.strictEqual(sample(text, "lo_migrate_rows_remaining_at_start"), 11)
    assert.strictEqual(sample(text, "lo_migrate_run_start_time_seconds"), 1000)
    assert.isTrue(text.endsWith("\n"))
  })

  it.live("--metrics-port serves /metrics during a run", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema({ withSha2Column: true })
      for (let i = 0; i < 12; i++) yield* insertObject({ bytes: randomBytes(3000 + i, 600 + i) })
      const port = yield* freePort
      const args = [
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket, "--metrics-port", String(port), "--progress", "plain"
      ]
      const url = `http://127.0.0.1:${port}/metrics`
      // Hold a lock on the whole table: the committers' UPDATE waits, so the run stays in the middle
      // with every object stored and none committed until this transaction ends.
      const cli = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`LOCK TABLE _nice_binary IN SHARE MODE`
        const fiber = yield* Effect.forkChild(runCli(args))
        let text = ""
        for (let i = 0; i < 600; i++) {
          const got = yield* get(url).pipe(Effect.catchCause(() => Effect.succeed(undefined)))
          if (got !== undefined) {
            assert.strictEqual(got.status, 200)
            assert.include(got.type ?? "", "text/plain")
            text = got.text
            if (sample(text, `lo_migrate_objects_total{stage="storer"}`) === 12) break
          }
          yield* Effect.sleep("100 millis")
        }
        assert.strictEqual(sample(text, `lo_migrate_objects_total{stage="storer"}`), 12, text)
        assert.strictEqual(sample(text, `lo_migrate_objects_total{stage="committer"}`), 0)
        assert.strictEqual(sample(text, `lo_migrate_bytes_total{stage="storer"}`), 12 * 3000 + 66)
        assert.strictEqual(sample(text, "lo_migrate_rows_remaining_at_start"), 12)
        assert.isDefined(sample(text, `lo_migrate_queue_used{queue="commit"}`))
        assert.strictEqual((yield* get(`http://127.0.0.1:${port}/other`)).status, 404)
        return fiber
      }))
      const result = yield* Fiber.join(cli)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stderr, `metrics at ${url}`)
      assert.strictEqual((yield* readRows).filter((r) => r.sha2 !== null).length, 12)
      // the server is gone with the run
      const after = yield* get(url).pipe(Effect.map(() => "answered"), Effect.catchCause(() => Effect.succeed("refused")))
      assert.strictEqual(after, "refused")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a port that is taken is a setup problem (exit 2)", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const blocker = createServer()
      const port = yield* Effect.promise(() =>
        new Promise<number>((resolve) =>
          blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as { port: number }).port))
        )
      )
      yield* Effect.addFinalizer(() => Effect.promise(() => new Promise<void>((r) => blocker.close(() => r()))))
      const result = yield* runCli([
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket, "--metrics-port", String(port)
      ])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(result.stderr, "invalid setting --metrics-port")
      assert.include(result.stderr, "EADDRINUSE")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
