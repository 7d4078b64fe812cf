// One writer per destination: a second zodb-convert (copy or --upload-blobs) into a destination that a
// run is writing is refused at once (exit 2, naming the session that holds the lock) and touches
// nothing; the lock goes with its session, so a killed run never leaves it behind; a run whose lock
// session is killed takes the lock again, and one that finds another run holding it stops, keeping what
// it committed. Real PostgreSQL, real processes, faults in front of the real server.
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Redacted, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import type { TestDatabaseShape } from "../support/Postgres.ts"
import * as TcpProxy from "../support/TcpProxy.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { digest, filestorageSection, fixtures, freshDb, whenCommitted, writeConfig, zodbConvert } from "../support/Zodb.ts"

const dataFs = `${fixtures}/bench-scale/Data.fs`
const lockKey = `hashtext('zodb-convert'), hashtext('destination public')`

/** A pool of the test's own on `db` (its sessions are not the tool's). */
const client = (db: TestDatabaseShape) =>
  Layer.build(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 2, applicationName: "locktest" })).pipe(
    Effect.map((context) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.provideContext(effect as Effect.Effect<A, E, SqlClient.SqlClient>, context) as Effect.Effect<A, E, Exclude<R, SqlClient.SqlClient>>
    )
  )

const tables = (sql: SqlClient.SqlClient) =>
  sql<{ tablename: string }>`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`.pipe(
    Effect.map((rows) => rows.map((r) => r.tablename))
  )

/** The pid holding the destination's lock, if any. */
const holderPid = (sql: SqlClient.SqlClient) =>
  sql.unsafe<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = (hashtext('zodb-convert')::bigint & 4294967295)::oid
      AND objid = (hashtext('destination public')::bigint & 4294967295)::oid`).pipe(Effect.map((r) => r[0]?.pid))

const until = (what: string, check: Effect.Effect<boolean, any>, seconds = 60) =>
  Effect.gen(function*() {
    for (let i = 0; i < seconds * 20; i++) {
      if (yield* check) return
      yield* Effect.sleep("50 millis")
    }
    assert.fail(`timed out waiting for ${what}`)
  })

const cleanCopy = Effect.gen(function*() {
  const clean = yield* freshDb
  const run = yield* zodbConvert([writeConfig(yield* scopedTempDir("zodb-lock-clean-"), { source: filestorageSection(dataFs), db: clean })])
  assert.strictEqual(run.code, 0, run.stderr)
  return yield* digest(clean)
})

/**
 * A copy of the bench-scale Data.fs (-w 2) through a TCP proxy that, once `commits` transactions are
 * committed, holds every object write: the copy cannot end until `release`, whatever a test does
 * meanwhile. `config` reaches the same destination directly (for the resume or a second run).
 */
const heldCopy = (db: TestDatabaseShape, name: string, commits: number) =>
  Effect.gen(function*() {
    const proxy = yield* TcpProxy.make({ host: db.host, port: db.port })
    const config = writeConfig(yield* scopedTempDir(`${name}-`), { source: filestorageSection(dataFs), db })
    const slowed = writeConfig(yield* scopedTempDir(`${name}-held-`), { source: filestorageSection(dataFs), db, viaPort: proxy.port })
    let armed = false
    yield* proxy.onStatement({ pattern: /INSERT INTO object_state/i, action: "freeze", armed: () => armed, count: 1_000_000 })
    let cancel = () => {}
    let stderr = () => ""
    const run = yield* Effect.forkChild(zodbConvert([slowed, "-w", "2"], {
      onStart: (_, output) => {
        stderr = output.stderr
        cancel = whenCommitted(db, commits, () => {
          armed = true
        })
      }
    }))
    yield* until(`${commits} commits`, Effect.sync(() => armed))
    return {
      config,
      run,
      stderr: () => stderr(),
      /** lets the held writes through, and stops holding new ones */
      release: Effect.suspend(() => {
        armed = false
        cancel()
        return proxy.thaw
      })
    }
  })

const scoped = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.scoped(effect)

describe("zodb-convert: one run at a time per destination", () => {
  it.live("the lock held by another session: refused at once with exit 2, naming that session; nothing created; free again, the copy runs", () =>
    scoped(Effect.gen(function*() {
      const db = yield* freshDb
      const use = yield* client(db)
      const config = writeConfig(yield* scopedTempDir("zodb-lock-held-"), { source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`), db })
      const held = yield* use(Effect.gen(function*() {
        // reserved for the rest of the test's scope
        const sql = yield* SqlClient.SqlClient
        const connection = yield* sql.reserve
        yield* connection.execute(`SELECT pg_advisory_lock(${lockKey})`, [], undefined)
        const [me] = (yield* connection.execute("SELECT pg_backend_pid() AS pid", [], undefined)) as ReadonlyArray<{ pid: number }>
        return { connection, pid: me!.pid }
      }))
      const refused = yield* zodbConvert([config])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, `another zodb-convert run is working on destination database ${db.name} schema public`)
      assert.include(refused.stderr, `pid ${held.pid} (locktest`)
      assert.include(refused.stderr, "wait for that run to finish")
      assert.deepStrictEqual(yield* use(Effect.flatMap(SqlClient.SqlClient, tables)), [], "nothing created")
      // --upload-blobs is refused the same way
      const manifest = `${yield* scopedTempDir("zodb-lock-manifest-")}/m.jsonl`
      const upload = yield* zodbConvert([config, "--upload-blobs", manifest, "--s3-bucket", "b"])
      assert.strictEqual(upload.code, 2, upload.stderr)
      assert.include(upload.stderr, "another zodb-convert run is working on")

      // a lock freed within the grace (a run killed a moment ago, its backend not yet gone): waited for
      const waiting = yield* Effect.forkChild(zodbConvert([config]))
      yield* Effect.sleep("1500 millis")
      yield* held.connection.execute(`SELECT pg_advisory_unlock(${lockKey})`, [], undefined)
      const free = yield* Fiber.join(waiting)
      assert.strictEqual(free.code, 0, free.stderr)
    })), { timeout: 120_000 })

  it.live("two copies at once: the second is refused while the first works; the first completes as a clean copy would", () =>
    scoped(Effect.gen(function*() {
      const expected = yield* cleanCopy
      const db = yield* freshDb
      // the first run's writers wait at the proxy while the second starts: the first cannot end before
      const first = yield* heldCopy(db, "zodb-lock-two", 5)
      const refused = yield* zodbConvert([first.config, "--incremental"])
      yield* first.release
      const done = yield* Fiber.join(first.run)
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.match(refused.stderr, /another zodb-convert run is working on destination database \S+ schema public \(advisory lock held\): held by pid \d+ \(zodb-convert/)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.deepStrictEqual(yield* digest(db), expected)
      // and the lock went with the first run
      const use = yield* client(db)
      assert.isUndefined(yield* use(Effect.flatMap(SqlClient.SqlClient, holderPid)))
    })), { timeout: 180_000 })

  it.live("a killed run leaves no lock behind: --incremental right after SIGKILL takes it and completes", () =>
    scoped(Effect.gen(function*() {
      const expected = yield* cleanCopy
      const db = yield* freshDb
      const config = writeConfig(yield* scopedTempDir("zodb-lock-kill-"), { source: filestorageSection(dataFs), db })
      let cancel = () => {}
      const killed = yield* zodbConvert([config, "-w", "1"], {
        onStart: (child) => {
          cancel = whenCommitted(db, 20, () => child.kill("SIGKILL"))
        }
      })
      cancel()
      assert.strictEqual(killed.signal, "SIGKILL", killed.stderr)
      const resumed = yield* zodbConvert([config, "--incremental"])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.deepStrictEqual(yield* digest(db), expected)
    })), { timeout: 180_000 })

  it.live("the lock's session killed mid-copy: taken again on a new session, the copy completes", () =>
    scoped(Effect.gen(function*() {
      const expected = yield* cleanCopy
      const db = yield* freshDb
      const use = yield* client(db)
      // the writers wait (their statements held at the proxy) until the lock is back: the copy cannot end first
      const held = yield* heldCopy(db, "zodb-lock-relock", 10)
      const pids: Array<number> = []
      yield* use(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const before = yield* holderPid(sql)
        assert.isDefined(before)
        pids.push(before!)
        yield* sql`SELECT pg_terminate_backend(${before!})`
        yield* until("the lock taken again", Effect.map(holderPid(sql), (pid) => pid !== undefined && pid !== before))
        pids.push((yield* holderPid(sql))!)
      }))
      yield* held.release
      const result = yield* Fiber.join(held.run)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stderr, "lock taken again")
      assert.notStrictEqual(pids[0], pids[1])
      assert.deepStrictEqual(yield* digest(db), expected)
    })), { timeout: 180_000 })

  it.live("the lock's session killed and the lock taken by another session meanwhile: the copy stops, exit 1, keeping what it committed; later --incremental completes", () =>
    scoped(Effect.gen(function*() {
      const expected = yield* cleanCopy
      const db = yield* freshDb
      const use = yield* client(db)
      const held = yield* heldCopy(db, "zodb-lock-lost", 10)
      yield* use(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const before = yield* holderPid(sql)
        assert.isDefined(before)
        // kill the lock's session and take the lock in the same breath, as another run would
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT pg_terminate_backend(${before!})`
          yield* sql.unsafe(`SELECT pg_advisory_xact_lock(${lockKey})`)
          yield* until("the run to notice", Effect.sync(() => held.stderr().includes("another run holds it now")))
          yield* held.release
          const result = yield* Fiber.join(held.run)
          assert.strictEqual(result.code, 1, result.stderr)
          assert.include(result.stderr, "another zodb-convert run took the run lock of destination database")
        }))
      }))
      const partial = yield* digest(db)
      assert.notDeepEqual(partial, expected)
      const resumed = yield* zodbConvert([held.config, "--incremental"])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.deepStrictEqual(yield* digest(db), expected)
    })), { timeout: 180_000 })
})
