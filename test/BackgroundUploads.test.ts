// The guide's "background mode" is the normal pipeline: reading runs ahead of S3 within the queue
// bounds, and a slow S3 never keeps a PostgreSQL transaction open. Here S3 is slowed down by a
// delaying wrapper of the real S3 store layer, and pg_stat_activity is sampled during the whole run:
// no session of the tool may sit "idle in transaction" while uploads are slow.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { validate } from "../src/domain/Settings.ts"
import * as Migration from "../src/migrate/Migration.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { ObjectStore } from "../src/s3/ObjectStore.ts"
import * as S3Store from "../src/s3/S3Store.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("background uploads", () => {
  it.live("a slow S3 holds no PostgreSQL transaction open", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const n = 12
      for (let i = 0; i < n; i++) yield* insertObject({ bytes: randomBytes(3000 + i, 700 + i) })

      const settings = yield* validate({
        pgUrl: db.url,
        s3Url: s3.endpoint,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        bucket: s3.bucket,
        storerThreads: 2,
        commitChunk: 3,
        interval: 60
      })
      let puts = 0
      const slowStore = Layer.effect(
        ObjectStore,
        Effect.gen(function*() {
          const inner = yield* ObjectStore
          return ObjectStore.of({
            ...inner,
            put: (request) => Effect.andThen(Effect.sleep("1200 millis"), inner.put(request)).pipe(Effect.tap(() => Effect.sync(() => puts++)))
          })
        })
      ).pipe(Layer.provide(S3Store.layer({
        endpoint: s3.endpoint,
        region: settings.region,
        bucket: settings.bucket,
        pathStyle: true,
        accessKey: settings.accessKey,
        secretKey: settings.secretKey,
        partSize: settings.uploadChunkSize,
        partConcurrency: 4,
        connections: 8,
        retry: defaultPolicy(settings.retries)
      })))

      const run = yield* Effect.forkChild(
        Migration.run(settings, { report: () => Effect.void }).pipe(Migration.provideTo(settings, { store: slowStore }), Effect.scoped)
      )
      let samples = 0
      let toolSessions = 0
      // A session is "idle in transaction" for a moment between a transaction's statements (the UPDATE
      // and its COMMIT); one held across an upload would stay so for the whole 1.2 s S3 delay.
      const held: Array<string> = []
      const seen = new Set<string>()
      while (run.pollUnsafe() === undefined) {
        const rows = yield* sql<{ state: string | null; idle_ms: number | null; query: string | null }>`
          SELECT state, (extract(epoch FROM now() - state_change) * 1000)::float8 AS idle_ms, query
          FROM pg_stat_activity WHERE application_name = 'lo-migrate' AND pid <> pg_backend_pid()`
        samples++
        toolSessions = Math.max(toolSessions, rows.length)
        for (const r of rows) {
          if (r.state?.startsWith("idle in transaction")) seen.add(r.query ?? "")
          if (r.state?.startsWith("idle in transaction") && (r.idle_ms ?? 0) > 500) held.push(`${r.state} ${r.idle_ms} ms after: ${r.query}`)
        }
        yield* Effect.sleep("20 millis")
      }
      const summary = yield* Fiber.join(run)
      assert.strictEqual(summary.migrated, n)
      assert.isAbove(samples, 10, "sampled while the run went on")
      assert.isAbove(toolSessions, 0, "the tool's sessions were visible")
      assert.deepStrictEqual(held, [], `no session of the tool held a transaction open (seen briefly: ${[...seen].join(" | ")})`)
      assert.strictEqual(puts, n)
      assert.strictEqual((yield* readRows).filter((r) => r.sha2 !== null).length, n)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
