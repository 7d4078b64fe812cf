// The fault matrix: every step of a run (listing a page, reading an object, a single PUT, a part, the
// completion, the commit, the watermark flush, the run lock's session) crossed with every fault
// (transient error, permanent error, stall, connection reset, server restart, SIGINT, SIGINT twice,
// SIGKILL). For each cell the run ends within its bound with the exit code the fault calls for, no row
// is marked without its object in S3, no temp file is left (after SIGKILL: once the rerun swept it),
// and a rerun, once the fault is gone, finishes the job with every object verified.
//
// Faults go in front of the real servers: the S3 ones through FaultProxy (in front of s3rver), the
// PostgreSQL ones through TcpProxy (in front of the server) and the server's own means (terminating a
// backend, a constraint, a trigger, a revoked grant, a lock taken by another session). A PostgreSQL
// step is found by the statement its session last ran (pg_stat_activity), once the run is under way.
import { assert } from "@effect/vitest"
import { Duration, Effect, Layer, Scope } from "effect"
import { SqlClient } from "effect/sql"
import type { ChildProcess } from "node:child_process"
import { runCli } from "./Cli.ts"
import { FaultProxy, type FaultRule, faults } from "./FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./Nice2Fixture.ts"
import { TestDatabase } from "./Postgres.ts"
import { endsWithin, markedCount, runnerOf, tempFilesIn } from "./RunControl.ts"
import { TestS3 } from "./S3.ts"
import * as TcpProxy from "./TcpProxy.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, freshTempDir } from "./Verify.ts"

export const steps = ["list", "read", "put", "part", "complete", "commit", "watermark", "lock"] as const
export type Step = (typeof steps)[number]
export const faultKinds = ["transient", "permanent", "stall", "reset", "restart", "sigint", "sigint-twice", "sigkill"] as const
export type FaultKind = (typeof faultKinds)[number]

/** How long any cell's run may take; the stalls are bounded by --pg-timeout 2 and --s3-timeout 2. */
export const runBound = Duration.seconds(60)
/** How long the process may live after the second signal. */
export const secondSignalBound = 2000

const MiB = 1024 * 1024

/** The exit codes a cell may end with (null: killed). */
export const expectedCodes = (step: Step, fault: FaultKind): ReadonlyArray<number | null> => {
  switch (fault) {
    case "transient":
    case "stall":
    case "reset":
    case "restart":
      return [0]
    // another run holds the lock now: this one stops gracefully, as on a signal (or had finished
    // before its next check, every 2 s, found out)
    case "permanent":
      return step === "lock" ? [130, 0] : [1]
    // the run may have finished its last objects before the signal was handled
    case "sigint":
    case "sigint-twice":
      return [130, 0]
    case "sigkill":
      return [null]
  }
}

export const env = FaultProxy.layerWith({ seed: 17 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const objectPut = /\/[0-9a-f]{64}(\?|$)/
const requestOf: Record<"put" | "part" | "complete", { readonly method: string; readonly path: RegExp }> = {
  put: { method: "PUT", path: /\/[0-9a-f]{64}(\?x-id=PutObject)?$/ },
  part: { method: "PUT", path: /\/[0-9a-f]{64}\?partNumber=/ },
  complete: { method: "POST", path: /\/[0-9a-f]{64}\?uploadId=/ }
}

/** The statement of each PostgreSQL step, as the tool sends it (TcpProxy follows the protocol). */
const statementOf: Record<"list" | "read" | "commit" | "watermark", RegExp> = {
  list: /FROM _nice_binary[\s\S]*ORDER BY hash/,
  read: /lo_get\(/,
  commit: /UPDATE _nice_binary/,
  watermark: /INSERT INTO lo_migrate_watermark/
}

/**
 * What each step's cells add to the run so that the step goes on through the run: listing a second
 * page only once the receivers have taken most of the first (small queues), reading one object per
 * statement (above --in-mem-max) at the storers' pace (a small store queue).
 */
const stepArgs: Partial<Record<Step, ReadonlyArray<string>>> = {
  list: ["--receiver-queue", "16", "--storer-queue", "4"],
  read: ["--storer-queue", "2"]
}

const data = (step: Step) =>
  Effect.gen(function*() {
    yield* createNice2Schema({ withSha2Column: true })
    const objects: Array<InsertedObject> = []
    // listing faults need a second page (1024 rows each) to land on; reading faults, objects read one
    // per statement (above --in-mem-max 2)
    // the lock is checked every 2 s: its cells need a run that outlasts a check after the fault
    const small = step === "list" ? 1100 : step === "lock" ? 160 : 40
    const size = (i: number) => step === "list" ? 8 + (i % 40) : step === "read" ? 2100 + 37 * i : 200 + 37 * i
    for (let i = 0; i < small; i++) objects.push(yield* insertObject({ bytes: randomBytes(size(i), 1000 + i) }))
    // above --in-mem-max 2: temp files; and one multipart object (two parts of 5 MiB)
    for (let i = 0; i < 4; i++) objects.push(yield* insertObject({ bytes: randomBytes(3000 + i, 5000 + i) }))
    objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB + 3, 6000) }))
    return objects
  })

interface Session {
  readonly pid: number
  readonly port: number
}

/** The session holding the run lock (the exclusive advisory lock). */
const lockSession = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ pid: number; port: number | null; classid: number; objid: number }>`
    SELECT l.pid, a.client_port AS port, l.classid::bigint AS classid, l.objid::bigint AS objid
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' AND l.database =
      (SELECT oid FROM pg_database WHERE datname = current_database()) AND a.application_name = 'lo-migrate'
    LIMIT 1`
  const row = rows[0]
  return row === undefined || row.port === null ? undefined : { ...row, port: row.port }
})

/** An advisory key's halves as pg_locks shows them (unsigned), back to the int4s they were taken with. */
const int4 = (n: number | bigint) => {
  const v = Number(n)
  return v > 2147483647 ? v - 4294967296 : v
}

export const runCell = (step: Step, fault: FaultKind) =>
  Effect.gen(function*() {
    const db = yield* TestDatabase
    const s3 = yield* TestS3
    const proxy = yield* FaultProxy
    const sql = yield* SqlClient.SqlClient
    const tmp = yield* freshTempDir
    const outer = yield* Effect.scope
    const objects = yield* data(step)
    const pg = yield* TcpProxy.make({ host: db.host, port: db.port })
    const run = yield* runnerOf
    const state = { child: undefined as ChildProcess | undefined, fired: false, secondSignalAt: 0, exitedAt: 0 }
    const undo: Array<Effect.Effect<void, unknown, SqlClient.SqlClient>> = []

    const isSignal = fault === "sigint" || fault === "sigint-twice" || fault === "sigkill"
    const signal = () => {
      const child = state.child
      if (child === undefined) return
      if (fault === "sigkill") child.kill("SIGKILL")
      else child.kill("SIGINT")
      if (fault === "sigint-twice") {
        setTimeout(() => {
          state.secondSignalAt = Date.now()
          child.kill("SIGINT")
        }, 300)
      }
    }

    // every object PUT is slowed down a little, so that the run is still going when a fault comes
    const slow: FaultRule = { name: "slow", method: "PUT", path: objectPut, fault: { kind: "slow", delayMs: 25 } }
    const s3Rules = (): ReadonlyArray<FaultRule> => {
      // the listing's cells pace themselves by their small queues
      if (step === "list") return []
      if (step !== "put" && step !== "part" && step !== "complete") return [slow]
      const at = requestOf[step]
      const rule = (f: FaultRule["fault"], count?: number, onFire?: () => void): FaultRule => ({
        name: "cell",
        method: at.method,
        path: at.path,
        fault: f,
        ...(count === undefined ? {} : { count }),
        ...(onFire === undefined ? {} : { onFire })
      })
      const fire = (f: () => void) => () => {
        state.fired = true
        f()
      }
      switch (fault) {
        case "transient":
          return [rule(faults.internalError, 2, fire(() => undefined)), slow]
        case "permanent":
          return [rule(faults.accessDenied, undefined, fire(() => undefined)), slow]
        case "stall":
          return [rule({ kind: "stall" }, 1, fire(() => undefined)), slow]
        case "reset":
          return [rule(step === "part" ? faults.resetBefore : faults.resetAfter, 2, fire(() => undefined)), slow]
        case "restart":
          // as the client sees a restart: every request reset for 1.5 s, then service again
          return [
            rule({ kind: "slow", delayMs: 50 }, 1, fire(() => {
              Effect.runSync(proxy.setRules([{ name: "down", fault: faults.resetBefore }]))
              setTimeout(() => Effect.runSync(proxy.setRules([slow])), 1500)
            })),
            slow
          ]
        default:
          return [rule({ kind: "slow", delayMs: 400 }, 1, fire(signal)), slow]
      }
    }
    yield* proxy.setRules(s3Rules())

    // PostgreSQL steps: the fault is applied once the run is under way and the step's session is known
    // PostgreSQL steps. The run is under way once five rows are marked: then a fault that needs no
    // particular session comes at once, a fault on the step's statement comes with the next one the
    // tool sends (TcpProxy acts on that very connection), a fault on the run lock's session comes to
    // the session pg_locks shows holding it.
    const armed = { now: false }
    const terminateByPort = (port: number) =>
      run(Effect.asVoid(sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ${port}`)).catch(() => undefined)
    const onStatement = (action: TcpProxy.StatementAction) =>
      pg.onStatement({
        pattern: statementOf[step as keyof typeof statementOf],
        armed: () => armed.now,
        action: typeof action === "function" ? (port) => {
          state.fired = true
          action(port)
        } : action
      })
    const isPgStep = step === "list" || step === "read" || step === "commit" || step === "watermark" || step === "lock"
    const bySession = step === "lock" && (fault === "transient" || fault === "reset" || fault === "stall")
    const byStatement = (step === "list" || step === "read" || step === "commit" || step === "watermark") &&
      (fault === "transient" || fault === "reset" || fault === "stall" || fault === "restart" || isSignal)
    if (byStatement) {
      yield* onStatement(
        fault === "transient"
          ? terminateByPort
          : fault === "reset"
          ? "reset"
          : fault === "stall"
          ? "freeze"
          : fault === "restart"
          ? () => Effect.runSync(pg.restart(2000))
          : () => signal()
      )
    }
    const pgFault = Effect.gen(function*() {
      if (byStatement) {
        armed.now = true
        return false
      }
      if (bySession) {
        const session = yield* lockSession
        if (session === undefined) return false
        if (fault === "transient") yield* sql`SELECT pg_terminate_backend(${session.pid})`
        else if (fault === "reset") yield* pg.resetSession(session.port)
        else yield* pg.freezeSession(session.port)
        return true
      }
      if (fault === "restart") yield* pg.restart(2000)
      else if (fault === "permanent") {
        const session = step === "lock" ? yield* lockSession : { pid: 0, port: 0 }
        if (session === undefined) return false
        yield* permanent(step, session)
      } else signal()
      return true
    })
    const permanent = (step: Step, session: Session) =>
      Effect.gen(function*() {
        switch (step) {
          case "list":
            yield* sql`ALTER TABLE _nice_binary RENAME COLUMN mime_type TO mime`
            undo.push(Effect.asVoid(sql`ALTER TABLE _nice_binary RENAME COLUMN mime TO mime_type`))
            return
          case "read": {
            // this role may no longer read the objects not yet migrated (an owner may revoke its own grant)
            const rows = yield* sql<{ data: number }>`SELECT data FROM _nice_binary WHERE sha2 IS NULL`
            for (const r of rows) yield* sql.unsafe(`REVOKE SELECT ON LARGE OBJECT ${r.data} FROM CURRENT_USER`)
            undo.push(Effect.forEach(rows, (r) => sql.unsafe(`GRANT SELECT ON LARGE OBJECT ${r.data} TO CURRENT_USER`), { discard: true }))
            return
          }
          case "commit":
            yield* sql`ALTER TABLE _nice_binary ADD CONSTRAINT refuse_sha2 CHECK (sha2 IS NULL) NOT VALID`
            undo.push(Effect.asVoid(sql`ALTER TABLE _nice_binary DROP CONSTRAINT refuse_sha2`))
            return
          case "watermark":
            yield* sql.unsafe(`CREATE FUNCTION refuse_watermark() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN RAISE EXCEPTION 'watermark writes are refused'; END $$`)
            yield* sql`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON lo_migrate_watermark FOR EACH ROW EXECUTE FUNCTION refuse_watermark()`
            undo.push(Effect.asVoid(sql`DROP TRIGGER refuse ON lo_migrate_watermark`))
            return
          case "lock": {
            // the lock's session ends and another session takes the lock: this run must not go on
            const held = (yield* lockSession)!
            yield* sql`SELECT pg_terminate_backend(${session.pid})`
            const other = yield* Scope.provide(sql.reserve, outer)
            yield* other.executeRaw(`SELECT pg_advisory_lock(${int4(held.classid)}, ${int4(held.objid)})`, [])
            undo.push(Effect.asVoid(other.executeRaw(`SELECT pg_advisory_unlock(${int4(held.classid)}, ${int4(held.objid)})`, [])))
            return
          }
        }
      })

    const args = [
      "migrate", "--pg-url", pg.via(db.url), "--s3-url", proxy.endpoint, "--access-key", s3.accessKey,
      "--secret-key", s3.secretKey, "--bucket", s3.bucket,
      "--pg-timeout", "2", "--s3-timeout", "2", "--retries", "6", "--commit-chunk", "5", "--storer-threads", step === "list" ? "8" : "2",
      "--in-mem-max", "2", "--upload-chunk-size", "5120", "--temp-dir", tmp, ...(stepArgs[step] ?? [])
    ]
    const result = yield* endsWithin(
      runBound,
      runCli(args, {
        onStart: (child) => {
          state.child = child
          child.on("exit", () => (state.exitedAt = Date.now()))
          if (!isPgStep) return
          let busy = false
          const timer = setInterval(() => {
            if (state.fired || armed.now || busy) return
            busy = true
            run(Effect.gen(function*() {
              if ((yield* markedCount) < 5) return
              if (yield* pgFault) state.fired = true
            })).catch((e) => console.error(`fault ${step}/${fault} could not be applied`, e)).finally(() => {
              busy = false
            })
          }, 25)
          child.on("close", () => clearInterval(timer))
        }
      })
    )
    const cell = `${step} x ${fault}`
    const output = `${cell}: exit ${result.code}\n${result.stderr.slice(-3000)}`
    const fired = state.fired || (yield* pg.acted) > 0
    assert.isTrue(fired, `${cell}: the fault was applied mid-run\n${output}`)
    assert.include(expectedCodes(step, fault) as ReadonlyArray<number | null>, result.code, output)
    if (fault === "sigint-twice" && state.secondSignalAt > 0) {
      assert.isBelow(state.exitedAt - state.secondSignalAt, secondSignalBound, `${cell}: gone after the second signal`)
    }
    if (fault !== "sigkill") assert.deepStrictEqual(tempFilesIn(tmp), [], `${cell}: temp files left`)

    // the fault is gone: every marked row is backed, and a rerun finishes the job
    yield* pg.thaw
    yield* proxy.setRules([])
    for (const u of undo) yield* u
    yield* assertMarkedRowsBacked
    const rerun = yield* runCli([
      "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey, "--secret-key", s3.secretKey,
      "--bucket", s3.bucket, "--temp-dir", tmp, "--upload-chunk-size", "5120"
    ])
    assert.strictEqual(rerun.code, 0, `${cell}: the rerun\n${rerun.stderr.slice(-3000)}`)
    yield* assertAllMigrated(objects)
    yield* assertNoStrayKeys
    assert.deepStrictEqual(tempFilesIn(tmp), [], `${cell}: temp files left after the rerun`)
  })
