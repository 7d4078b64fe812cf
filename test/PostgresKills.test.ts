// The executable under a storm of pg_terminate_backend: every session of the run killed dozens of times
// while rows are being read and committed. Each kill lands somewhere (idle, a page, a large object read,
// BEGIN, the UPDATE, COMMIT, the run lock's session); all of them must be retried, and the run must
// finish with every row migrated. Before the fix, a kill inside a commit transaction ended the run with
// a bare "PgConnection: Connection closed" (a defect from ROLLBACK on the dead session).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { assertAllMigrated, assertNoStrayKeys } from "./support/Verify.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("PostgreSQL sessions killed again and again", () => {
  it.live("every kill is retried; the run finishes with all rows migrated", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const inserted: Array<InsertedObject> = []
      for (let i = 0; i < 300; i++) inserted.push(yield* insertObject({ bytes: randomBytes(512 + i, 5000 + i) }))
      const terminate = sql<{ n: bigint }>`
        SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'lo-migrate' AND pid <> pg_backend_pid()`
      const marked = sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`
      let kills = 0
      let busy = false
      const result = yield* runCli([
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket,
        "--commit-chunk", "5", "--storer-threads", "2", "--retries", "20"
      ], {
        onStart: (child) => {
          // once past the pre-flight (a row is committed), kill every session of the run, 40 times in all,
          // at an odd interval so the kills fall at varied moments of the run's statements
          const timer = setInterval(() => {
            if (busy) return
            if (kills >= 40) return clearInterval(timer)
            busy = true
            const killOnce = Effect.gen(function*() {
              const [m] = yield* marked
              if (Number(m!.n) === 0) return
              const [k] = yield* terminate
              if (Number(k!.n) > 0) kills++
            })
            Effect.runPromise(Effect.ignore(killOnce)).finally(() => (busy = false))
          }, 37)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isAbove(kills, 0, "sessions were killed during the run")
      assert.notInclude(result.stderr, "unexpected error")
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))
})
