// --progress json: stdout carries one JSON object a line and nothing else; the last is the summary.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("--progress json", () => {
  it.live("writes started, snapshot, row-failed and summary events to stdout, nothing else", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      let bytes = 0
      for (let i = 0; i < 8; i++) bytes += (yield* insertObject({ bytes: randomBytes(700 + i, 700 + i) })).size
      const bad = yield* insertObject({ bytes: null })
      const result = yield* runCli([
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket, "--progress", "json", "--interval", "1"
      ])
      assert.strictEqual(result.code, 1, result.stderr)
      const lines = result.stdout.trimEnd().split("\n")
      const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
      const kinds = events.map((e) => e.event)
      assert.strictEqual(kinds[0], "started")
      assert.include(kinds, "snapshot")
      const summary = events[events.length - 1]!
      assert.deepInclude(summary, { event: "summary", outcome: "rows-failed", migrated: 8, failed: 1, bytes })
      const failed = events.find((e) => e.event === "row-failed")
      assert.deepInclude(failed, { key: bad.hash, reason: "null-data" })
      const snapshot = events.filter((e) => e.event === "snapshot").at(-1)!
      assert.deepInclude(snapshot, { migrated: 8, failed: 1, remaining: 9, total: 9 })
      assert.notInclude(result.stderr, "Progress Overview:")
      assert.include(result.stderr, "FAILED")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
