// The library API: Migration.layer with run and events, in-process and through the example program in
// examples/embed.ts (run with node as a user would, importing "lo-migrate" from the built package).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Stream } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Migration, MigrationRun, type ProgressEvent, validateSettings } from "../src/index.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const root = fileURLToPath(new URL("..", import.meta.url))

const runNode = (args: ReadonlyArray<string>, extraEnv: Record<string, string>) =>
  Effect.callback<{ code: number | null; stdout: string; stderr: string }>((resume) => {
    const child = spawn(process.execPath, [...args], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("library API", () => {
  it.live("Migration.layer: run yields the summary, events carry Started, RowFailed and Finished", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const good = []
      for (let i = 0; i < 5; i++) good.push(yield* insertObject({ bytes: randomBytes(1000 + i, 300 + i) }))
      const bad = yield* insertObject({ bytes: null })

      const result = yield* Effect.gen(function*() {
        const migration = yield* Migration
        const collected = yield* Effect.forkChild(Stream.runCollect(migration.events))
        const exit = yield* Effect.exit(migration.run)
        const events = yield* Fiber.join(collected)
        return { exit, events: [...events] as Array<ProgressEvent> }
      }).pipe(Effect.provide(Migration.layer({
        pgUrl: db.url, // plain strings where the CLI takes Redacted
        s3Url: s3.endpoint,
        bucket: s3.bucket,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        storerThreads: 2,
        report: false,
        eventInterval: "100 millis"
      })))

      // a skipped row is the typed error RowsFailed
      assert.isTrue(Exit.isFailure(result.exit))
      if (Exit.isFailure(result.exit)) {
        const error = Option.getOrThrow(Exit.findErrorOption(result.exit))
        assert.strictEqual(error._tag, "RowsFailed")
      }
      const tags = result.events.map((e) => e._tag)
      assert.include(tags, "Started")
      assert.include(tags, "Snapshot")
      assert.strictEqual(tags[tags.length - 1], "Finished")
      const started = result.events.find((e) => e._tag === "Started")
      assert.strictEqual(started?._tag === "Started" ? started.remaining : -1, 6)
      const failed = result.events.filter((e) => e._tag === "RowFailed")
      assert.deepStrictEqual(failed.map((e) => e._tag === "RowFailed" ? e.failure.key : ""), [bad.hash])
      const finished = result.events[result.events.length - 1]!
      assert.strictEqual(finished._tag, "Finished")
      if (finished._tag === "Finished") {
        assert.strictEqual(finished.outcome, "rows-failed")
        assert.strictEqual(finished.migrated, 5)
        assert.strictEqual(finished.failed, 1)
        assert.strictEqual(finished.bytes, good.reduce((n, o) => n + o.size, 0))
      }
      const rows = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      for (const o of good) assert.strictEqual(rows.get(o.hash), o.sha256)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("Migration.layer fails with SettingsError on a bad option", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.asVoid(Migration).pipe(
          Effect.provide(Migration.layer({ pgUrl: "postgres://x@127.0.0.1/db", bucket: "ok-bucket", storerThreads: 0 }))
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Option.getOrThrow(Exit.findErrorOption(exit))
        assert.strictEqual(error._tag, "SettingsError")
        assert.include(error.message, "--storer-threads")
      }
      const badPort = yield* Effect.exit(
        Effect.asVoid(Migration).pipe(
          Effect.provide(Migration.layer({ pgUrl: "postgres://x@127.0.0.1/db", bucket: "ok-bucket", metricsPort: 70000 }))
        )
      )
      assert.include(Exit.isFailure(badPort) ? Option.getOrThrow(Exit.findErrorOption(badPort)).message : "", "metricsPort")
    }))

  it.live("MigrationRun.run serves /metrics during the run (read at the last snapshot, before the run ends)", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      for (let i = 0; i < 4; i++) yield* insertObject({ bytes: randomBytes(100 + i, 900 + i) })
      const settings = yield* validateSettings({
        pgUrl: db.url, s3Url: s3.endpoint, bucket: s3.bucket, accessKey: s3.accessKey, secretKey: s3.secretKey
      })
      let port = 0
      const scraped: Array<string> = []
      const summary = yield* MigrationRun.run(settings, {
        report: () => Effect.void,
        metrics: { host: "127.0.0.1", port: 0 },
        onMetricsListening: (p) => Effect.sync(() => { port = p }),
        eventInterval: "1 hour", // only the final snapshot, after the pipeline, while the run still holds the server
        onEvent: (event) =>
          event._tag === "Snapshot"
            ? Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text())).pipe(
              Effect.map((text) => scraped.push(text))
            )
            : Effect.void
      }).pipe(MigrationRun.provideTo(settings))
      assert.strictEqual(summary.migrated, 4)
      assert.strictEqual(scraped.length, 1)
      assert.include(scraped[0]!, `lo_migrate_objects_total{stage="committer"} 4`)
      assert.include(scraped[0]!, `lo_migrate_bytes_total{stage="committer"} ${100 + 101 + 102 + 103}`)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("examples/embed.ts runs against PostgreSQL and S3", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const objects = []
      for (let i = 0; i < 3; i++) objects.push(yield* insertObject({ bytes: randomBytes(5000 + i, 400 + i) }))
      const result = yield* runNode(["examples/embed.ts"], {
        LO_MIGRATE_PG_URL: db.url,
        LO_MIGRATE_S3_URL: s3.endpoint,
        LO_MIGRATE_BUCKET: s3.bucket,
        AWS_ACCESS_KEY_ID: s3.accessKey,
        AWS_SECRET_ACCESS_KEY: s3.secretKey
      })
      assert.strictEqual(result.code, 0, result.stderr + result.stdout)
      assert.include(result.stdout, "started: 3 of 3 rows of _nice_binary")
      assert.include(result.stdout, "finished (success): 3 migrated, 0 failed")
      assert.include(result.stdout, `summary: migrated 3, failed 0, bytes ${5000 + 5001 + 5002}`)
      const rows = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      for (const o of objects) {
        assert.strictEqual(rows.get(o.hash), o.sha256)
        assert.isTrue(Option.isSome(yield* s3.getObject(o.sha256!)))
      }
    }).pipe(Effect.scoped, Effect.provide(env)))
})
