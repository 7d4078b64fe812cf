// lo-migrate's own schema change (ADD COLUMN sha2) on a table an application holds in an open
// transaction: it waits at most Ddl.lockTimeoutMs for the lock, ends with exit 2 naming the holding
// session and the statement to run by hand, and the application's queries on the table, which queue
// behind a waiting ALTER TABLE, are held up at most that long, not until the holder ends.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { lockTimeoutMs } from "../src/postgres/Ddl.ts"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { lockWaiters, openTransactionOn, waitUntil } from "./support/Sessions.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("a busy table", () => {
  it.live("ADD COLUMN gives up after the lock timeout with exit 2, naming the holder; the application's query is not blocked meanwhile", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(100, 1) })
      const holder = yield* openTransactionOn("_nice_binary")

      const cli = yield* Effect.forkChild(runCli(["migrate", ...(yield* target)]))
      yield* waitUntil(Effect.map(lockWaiters("_nice_binary"), (n) => n > 0), 30_000)
      const queued = Date.now()
      // the application's query arrives behind the waiting ALTER TABLE
      const app = yield* sql`SELECT count(*) AS n FROM _nice_binary`.pipe(Effect.timeoutOption("20 seconds"))
      const appMs = Date.now() - queued
      // (before the fix the ALTER waits for the holder: end it so the run can end and the test report)
      if (Option.isNone(app)) yield* holder.end
      const result = yield* Fiber.join(cli)
      const cliMs = Date.now() - queued
      // the holder's transaction is still open (it was not the one to give up)
      yield* holder.execute("SELECT 1")
      yield* holder.end

      assert.isTrue(Option.isSome(app), "the application's query finished while the holder's transaction was open")
      assert.isAtMost(appMs, lockTimeoutMs + 2_000, "the application's query waited at most about the lock timeout")
      assert.strictEqual(result.code, 2, result.stderr)
      assert.isAtMost(cliMs, lockTimeoutMs + 5_000, "the run ended soon after the lock timeout")
      assert.include(result.stderr, "table _nice_binary is busy: cannot add column sha2")
      assert.include(result.stderr, `held by pid ${holder.pid} (`)
      assert.include(result.stderr, "AccessShareLock")
      assert.include(result.stderr, "ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64);")
      // nothing changed: no column, no row marked; once the table is free the same run works
      const [col] = yield* sql<{ readonly n: bigint }>`
        SELECT count(*) AS n FROM information_schema.columns WHERE table_name = '_nice_binary' AND column_name = 'sha2'`
      assert.strictEqual(Number(col!.n), 0)
      const again = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.isTrue((yield* readRows).every((r) => r.sha2 !== null))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
