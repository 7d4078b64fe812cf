// A PostgreSQL session killed in the middle of one of the profile's transactions (pg_terminate_backend):
// the transaction is retried on a fresh connection, or ends as a typed DatabaseError; it never dies
// with the driver's "Connection closed" (effect/sql turns a failing ROLLBACK into a defect).
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Layer, Redacted, Scope } from "effect"
import { SqlClient } from "effect/sql"
import type { Stored } from "../src/domain/LargeObject.ts"
import type { MigratedRow } from "../src/domain/MigratedObject.ts"
import { Stats } from "../src/core/Stats.ts"
import * as Nice2 from "../src/profiles/nice2/Nice2.ts"
import { AfterCopy } from "../src/phases/AfterCopy.ts"
import { CopySource } from "../src/phases/CopySource.ts"
import { addSha2Column, createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"

const appName = "lo-migrate-killtest"

/** The tool's CopySource on its own pool, named so that its backends (and only they) can be killed. */
const toolSource = (attempts: number) =>
  Layer.unwrap(Effect.gen(function*() {
    const db = yield* TestDatabase
    return Nice2.layer({ attempts, base: "20 millis", cap: "200 millis" }).pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 3, applicationName: appName })),
      Layer.provideMerge(Stats.layer)
    )
  }))

const env = TestDatabase.layerClient

const killTool = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [r] = yield* sql<{ n: bigint }>`
    SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = ${appName}`
  return Number(r!.n)
})

/** Waits (bounded) until one of the tool's backends waits for a lock, i.e. is inside its transaction. */
const toolBlocked = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  for (let i = 0; i < 400; i++) {
    // the caller is inside a transaction, which would otherwise see one snapshot of pg_stat_activity
    yield* sql`SELECT pg_stat_clear_snapshot()`
    const [r] = yield* sql<{ n: bigint }>`
      SELECT count(*) AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = ${appName} AND wait_event_type = 'Lock'`
    if (Number(r!.n) > 0) return
    yield* Effect.sleep("50 millis")
  }
  assert.fail("the tool's transaction never blocked on the test's row lock")
})

const seed = (n: number) =>
  Effect.gen(function*() {
    yield* createNice2Schema()
    yield* addSha2Column
    return yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => insertObject({ bytes: randomBytes(64 + i, 900 + i) }))
  })

const storedOf = (o: { hash: string; oid: number | null; size: number; sha256: string | null }): Stored => ({
  candidate: { key: o.hash, oid: o.oid, size: o.size, contentType: "application/octet-stream", expectedSha1: o.hash },
  sha256: o.sha256!,
  key: o.sha256!
})

/**
 * Runs `effect` (a transaction of the tool's) while the test holds a lock on `hash`, kills the tool's
 * session while the transaction waits for that lock, then lets go: deterministic, whatever the load.
 */
const killWhileInTransaction = <A, E>(hash: string, effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT 1 FROM _nice_binary WHERE hash = ${hash} FOR UPDATE`
      const fiber = yield* Effect.forkChild(Effect.exit(effect))
      yield* toolBlocked
      assert.isAbove(yield* killTool, 0)
      return fiber
    })).pipe(Effect.flatMap(Fiber.join))
  })

/** No defect anywhere in `exit`: success, or typed failures only. */
const assertNoDefect = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isFailure(exit)) {
    assert.isFalse(Cause.hasDies(exit.cause), `a defect escaped: ${Cause.pretty(exit.cause)}`)
  }
}

describe("a PostgreSQL session killed mid-transaction", () => {
  it.live("commit: retried on a fresh connection, the rows are recorded", () =>
    Effect.gen(function*() {
      const objects = yield* seed(3)
      const scope = yield* Scope.make()
      const tool = yield* Layer.build(toolSource(5)).pipe(Scope.provide(scope))
      const commit = Context.get(tool, CopySource).commit(objects.map(storedOf))
      const exit = yield* killWhileInTransaction(objects[1]!.hash, commit)
      assertNoDefect(exit)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      if (Exit.isSuccess(exit)) assert.deepStrictEqual(exit.value.vanished, [])
      const stats = Context.get(tool, Stats)
      assert.isAtLeast((yield* stats.snapshot).retries, 1)
      const rows = yield* readRows
      for (const o of objects) assert.strictEqual(rows.find((r) => r.hash === o.hash)?.sha2, o.sha256)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(env)))

  it.live("release (prune): retried on a fresh connection, the large objects are released", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const objects = yield* seed(2)
      for (const o of objects) yield* sql`UPDATE _nice_binary SET sha2 = ${o.sha256} WHERE hash = ${o.hash}`
      const scope = yield* Scope.make()
      const tool = yield* Layer.build(toolSource(5)).pipe(Scope.provide(scope))
      const rows: ReadonlyArray<MigratedRow> = objects.map((o) => ({ key: o.hash, oid: o.oid, size: o.size, sha256: o.sha256! }))
      const release = Context.get(tool, AfterCopy).release(rows)
      const exit = yield* killWhileInTransaction(objects[0]!.hash, release)
      assertNoDefect(exit)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      if (Exit.isSuccess(exit)) assert.sameMembers(exit.value.released.map((r) => r.key), objects.map((o) => o.hash))
      for (const r of yield* readRows) assert.isNull(r.data)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(env)))

  it.live("killed at many moments (BEGIN, UPDATE, COMMIT, idle): each commit succeeds or fails typed", () =>
    Effect.gen(function*() {
      const objects = yield* seed(5)
      const chunk = objects.map(storedOf)
      const scope = yield* Scope.make()
      // one attempt: a kill is seen as a typed failure rather than hidden by a retry
      const tool = yield* Layer.build(toolSource(1)).pipe(Scope.provide(scope))
      const source = Context.get(tool, CopySource)
      let failed = 0
      for (let i = 0; i < 40; i++) {
        const fiber = yield* Effect.forkChild(Effect.exit(source.commit(chunk)))
        // spread the kill over the transaction's life: before BEGIN reaches the server up to after COMMIT
        yield* Effect.sleep(`${i % 8} millis`)
        yield* killTool
        const exit = yield* Fiber.join(fiber)
        assertNoDefect(exit)
        if (Exit.isFailure(exit)) {
          failed++
          const error = Cause.squash(exit.cause) as { readonly _tag?: string; readonly message?: string }
          assert.strictEqual(error._tag, "DatabaseError", Cause.pretty(exit.cause))
          assert.match(error.message ?? "", /^PostgreSQL record sha2 failed: /)
        }
      }
      yield* Effect.logDebug(`${failed} of 40 commits failed (typed)`)
      // the kills did not break the pool: a pooled session may still be a killed one, which an attempt
      // finds and the pool then replaces, so a commit retried as the tool retries goes through
      yield* source.commit(chunk).pipe(Effect.retry({ times: 3 }))
      const rows = yield* readRows
      for (const o of objects) assert.strictEqual(rows.find((r) => r.hash === o.hash)?.sha2, o.sha256)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(env)))
})
