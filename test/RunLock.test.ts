// The run lock in-process: exclusive per table and database, released when its scope closes, taken
// again when its session is killed, and reported lost when another session took it meanwhile.
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Ref, Scope } from "effect"
import { SqlClient } from "effect/sql"
import * as RunLock from "../src/postgres/RunLock.ts"
import { TestDatabase } from "./support/Postgres.ts"

/** A second, independent pool on the same database, named so its backends can be told apart. */
const toolPool = Layer.unwrap(Effect.gen(function*() {
  const db = yield* TestDatabase
  return PgClient.layer({ url: Redacted.make(db.url), maxConnections: 3, applicationName: "lo-migrate-locktest" })
}))

const env = Layer.mergeAll(TestDatabase.layerClient)

const holders = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ pid: number; application_name: string }>`
    SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
      AND l.classid::int = hashtext('lo-migrate') AND l.objid::int = hashtext('_nice_binary')`
})

describe("RunLock", () => {
  it.live("exclusive while held, free once its scope closes", () =>
    Effect.gen(function*() {
      const first = yield* Scope.make()
      const tool = yield* Layer.build(toolPool).pipe(Scope.provide(first))
      yield* RunLock.acquire("_nice_binary", { onLost: Effect.void }).pipe(Effect.provideContext(tool), Scope.provide(first))
      assert.strictEqual((yield* holders).length, 1)
      // the test's own pool is another session: refused
      const second = yield* Effect.exit(Effect.scoped(RunLock.acquire("_nice_binary", { onLost: Effect.void })))
      assert.isTrue(Exit.isFailure(second))
      assert.include(String(second), "another lo-migrate run is working on _nice_binary")
      // naming the session that holds it, as pg_stat_activity shows it
      assert.match(String(second), new RegExp(`held by pid ${(yield* holders)[0]!.pid} \\(lo-migrate-locktest`))
      // another table is another lock
      yield* Effect.scoped(RunLock.acquire("other_table", { onLost: Effect.void }))
      yield* Scope.close(first, Exit.void)
      assert.strictEqual((yield* holders).length, 0, "released")
      yield* Effect.scoped(RunLock.acquire("_nice_binary", { onLost: Effect.void }))
    }).pipe(Effect.provide(env)))

  it.live("a killed session takes the lock again; if another took it meanwhile, onLost runs", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const lost = yield* Ref.make(false)
      const scope = yield* Scope.make()
      const tool = yield* Layer.build(toolPool).pipe(Scope.provide(scope))
      yield* RunLock.acquire("_nice_binary", { onLost: Ref.set(lost, true), checkEvery: "0.3 seconds" }).pipe(
        Effect.provideContext(tool),
        Scope.provide(scope)
      )
      const kill = sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'lo-migrate-locktest'`
      const [before] = yield* holders
      yield* kill
      let again = yield* holders
      for (let i = 0; i < 50 && (again.length === 0 || again[0]!.pid === before!.pid); i++) {
        yield* Effect.sleep("100 millis")
        again = yield* holders
      }
      assert.strictEqual(again.length, 1)
      assert.notStrictEqual(again[0]!.pid, before!.pid, "held by a new session")
      assert.isFalse(yield* Ref.get(lost))

      // now kill it and grab the lock from the test's session before the check comes round
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* kill
        yield* sql`SELECT pg_advisory_xact_lock(hashtext('lo-migrate'), hashtext('_nice_binary'))`
        for (let i = 0; i < 50 && !(yield* Ref.get(lost)); i++) yield* Effect.sleep("100 millis")
      }))
      assert.isTrue(yield* Ref.get(lost), "onLost ran")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(env)))
})
