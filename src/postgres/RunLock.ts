/**
 * One run at a time per table: a session-level advisory lock, taken with `pg_try_advisory_lock` on a
 * connection reserved for the whole run, so that two operators cannot run lo-migrate on the same table
 * at once. The lock lives exactly as long as that session: released when the run's scope closes, and by
 * the server itself when the process dies (even on SIGKILL), so a crash never leaves a stale lock.
 *
 * The key is two int4s, `hashtext('lo-migrate')` and `hashtext(<table>)`, `<table>` being the
 * schema-qualified name the catalog gives (RunKey.ts), so every profile and spelling of one table takes
 * the same lock: advisory locks are per database, so the same table name in another database does not
 * collide. Values are bound as parameters, never spliced into the SQL. (hashtext is 32 bits: two tables
 * whose names collide exclude each other, which is safe.)
 *
 * With `--shard i/n` a run takes two locks on that session: the table's lock *shared* (shards run side by
 * side, but never next to an unsharded run, which takes it exclusively) and the shard's own lock
 * (`<table> shard i/n`) exclusively, so a second process on the same shard is refused. It also holds a
 * shared lock keyed by the shard count (`hashtext('lo-migrate shards <table>'), n`) and then looks in
 * `pg_locks` for the same lock with another `n`: shards of different counts would split the rows
 * differently and overlap, so such a run is refused. Two runs of different `n` starting at the same
 * instant may both see each other and both be refused; never do both go on.
 *
 * If the lock's session is killed during the run (`pg_terminate_backend`, a server restart), the run
 * takes the lock again on a fresh connection; if another run got it in between, this one stops
 * gracefully (what it stored is committed) rather than work alongside it.
 */
import { Clock, Data, Duration, Effect, Exit, Ref, Scope } from "effect"
import { SqlClient } from "effect/sql"
import { DatabaseUnavailable, describeCause, MigrationLocked, RunLockLost, ShardCountConflict } from "../domain/Errors.ts"
import { type Shard, shardSuffix } from "../domain/Profile.ts"
import { backoff, defaultPolicy, type RetryPolicy } from "../core/Retry.ts"

export const lockNamespace = "lo-migrate"

const tryLockSql = "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS locked"
const unlockSql = "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))"
const tryLockSharedSql = "SELECT pg_try_advisory_lock_shared(hashtext($1), hashtext($2)) AS locked"
const unlockSharedSql = "SELECT pg_advisory_unlock_shared(hashtext($1), hashtext($2))"
const tryCountLockSql = "SELECT pg_try_advisory_lock_shared(hashtext($1), $2::int4) AS locked"
const unlockCountSql = "SELECT pg_advisory_unlock_shared(hashtext($1), $2::int4)"
// pg_locks shows a two-int4 advisory key as classid = key1, objid = key2 (as unsigned oids), objsubid 2
const otherCountsSql = `SELECT DISTINCT l.objid::bigint AS n FROM pg_catalog.pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
    AND l.classid = (hashtext($1)::bigint & 4294967295)::oid AND l.objid <> $2::int4::bigint::oid
  ORDER BY 1`

// who holds a two-int4 advisory key (as otherCountsSql reads pg_locks), for the message of a refused run
const holdersSql = `SELECT l.pid, a.usename::text AS usename, a.application_name, host(a.client_addr) AS client,
    extract(epoch FROM now() - a.backend_start)::bigint AS seconds, a.backend_start::text AS started
  FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.pid <> pg_backend_pid()
    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
    AND l.classid = (hashtext($1)::bigint & 4294967295)::oid AND l.objid = (hashtext($2)::bigint & 4294967295)::oid
  ORDER BY l.pid`

const age = (seconds: number) =>
  seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`

interface Holder {
  readonly pid: number
  readonly description: string
  /** the backend's pid and start time: which session it is, even if its pid is reused later */
  readonly session: string
}

const describeHolder = (r: Record<string, unknown>): Holder => {
  const pid = Number(r.pid)
  const parts = [
    typeof r.application_name === "string" && r.application_name !== "" ? r.application_name : undefined,
    typeof r.usename === "string" ? `user ${r.usename}` : undefined,
    typeof r.client === "string" ? `from ${r.client}` : undefined,
    r.seconds === null || r.seconds === undefined ? undefined : `session open for ${age(Number(r.seconds))}`
  ].filter((p) => p !== undefined)
  return { pid, description: `pid ${pid}${parts.length === 0 ? "" : ` (${parts.join(", ")})`}`, session: `${pid}@${String(r.started)}` }
}

/** The name of the lock that tells which shard counts are running on `table`. */
const countLockName = (table: string) => `${lockNamespace} shards ${table}`

interface LockKey {
  readonly name: string
  readonly shared: boolean
}

/** The locks a run takes, in order: the table's, then (sharded) the shard's. */
const keysOf = (table: string, shard: Shard | undefined): ReadonlyArray<LockKey> =>
  shard === undefined
    ? [{ name: table, shared: false }]
    : [{ name: table, shared: true }, { name: `${table}${shardSuffix(shard)}`, shared: false }]

/** What one attempt found: the locks are held, another run holds one, or shards of another count run. */
type Outcome =
  | { readonly _tag: "Locked"; readonly session: string }
  | { readonly _tag: "Busy"; readonly holders: ReadonlyArray<Holder> }
  | { readonly _tag: "OtherCount"; readonly counts: ReadonlyArray<number> }

/** Tries once on a freshly reserved connection; the connection (and the locks) live until `scope` closes. */
const tryAcquire = (namespace: string, table: string, shard: Shard | undefined, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const connection = yield* Scope.provide(sql.reserve, scope)
    const take = (lockSql: string, unlockSql: string, params: ReadonlyArray<unknown>) =>
      Effect.gen(function*() {
        const rows = yield* connection.execute(lockSql, params, undefined)
        const locked = (rows[0] as { readonly locked?: unknown } | undefined)?.locked === true
        // Unlock before the connection goes back to the pool: a pooled session would keep holding the
        // lock, and closing the pool does not wait for the server to end the session. (Finalizers run in
        // reverse.)
        if (locked) yield* Scope.addFinalizer(scope, connection.execute(unlockSql, params, undefined).pipe(Effect.ignore))
        return locked
      })
    for (const key of keysOf(table, shard)) {
      const locked = yield* take(key.shared ? tryLockSharedSql : tryLockSql, key.shared ? unlockSharedSql : unlockSql, [
        namespace,
        key.name
      ])
      if (!locked) {
        // who has it, for the message; seeing no one (it was released meanwhile) is no error
        const holders = yield* connection.execute(holdersSql, [namespace, key.name], undefined).pipe(
          Effect.map((rows) => rows.map((r) => describeHolder(r as Record<string, unknown>))),
          Effect.orElseSucceed(() => [])
        )
        return { connection, outcome: { _tag: "Busy", holders } as Outcome }
      }
    }
    if (shard !== undefined) {
      // taken before looking, so of two runs of different n at least the later one sees the other
      yield* take(tryCountLockSql, unlockCountSql, [countLockName(table), shard.count])
      const others = yield* connection.execute(otherCountsSql, [countLockName(table), shard.count], undefined)
      if (others.length > 0) {
        const counts = others.map((r) => Number((r as { readonly n: unknown }).n))
        return { connection, outcome: { _tag: "OtherCount", counts } as Outcome }
      }
    }
    const [me] = yield* connection.execute(
      "SELECT pid, backend_start::text AS started FROM pg_catalog.pg_stat_activity WHERE pid = pg_backend_pid()",
      [],
      undefined
    )
    const row = me as { readonly pid?: unknown; readonly started?: unknown } | undefined
    return { connection, outcome: { _tag: "Locked", session: `${String(row?.pid)}@${String(row?.started)}` } as Outcome }
  })

/** Taking the lock again should succeed on a later attempt: this run's own lost session held it, or a holder just left. */
class RetakeLater extends Data.TaggedError("RetakeLater")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/**
 * Takes the run lock of `table` for the rest of the current scope, or fails with `MigrationLocked`.
 * `onLost` runs when the lock was lost and could not be taken back (another run holds it now).
 */
export const acquire = (
  table: string,
  options: {
    readonly onLost: Effect.Effect<void>
    /**
     * runs when the session was lost and the lock could not be taken again within the retry budget
     * (no other run has it, but PostgreSQL refuses or does not answer): the caller should end the run
     */
    readonly onFailed?: ((error: RunLockLost) => Effect.Effect<void>) | undefined
    /** how taking the lock again is retried; default: the statements' default policy */
    readonly retry?: RetryPolicy | undefined
    readonly checkEvery?: `${number} seconds`
    /** the run's shard: the table's lock is then shared, the shard's exclusive */
    readonly shard?: Shard | undefined
    /** the table as messages name it; default `table` */
    readonly shown?: string | undefined
    /** the lock's first key, and the program messages name: default lo-migrate */
    readonly namespace?: string | undefined
    /** how long a busy lock is tried again before the run is refused (default 5 s: a run just killed) */
    readonly grace?: Duration.Input | undefined
  }
): Effect.Effect<void, MigrationLocked | ShardCountConflict | DatabaseUnavailable, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const outer = yield* Effect.scope
    const name = options.shown ?? table
    const shown = `${name}${shardSuffix(options.shard)}`
    const namespace = options.namespace ?? lockNamespace
    // A run killed a moment ago may still hold the lock: its backend ends only once it notices the
    // closed socket (after the statement it was running). So a busy lock is tried again for `grace`.
    const graceMillis = Duration.toMillis(Duration.fromInputUnsafe(options.grace ?? "5 seconds"))
    const startedAt = yield* Clock.currentTimeMillis
    let holder = yield* Scope.fork(outer)
    let first = yield* tryAcquire(namespace, table, options.shard, holder).pipe(
      Effect.onError(() => Scope.close(holder, Exit.void)),
      Effect.mapError((error) => new DatabaseUnavailable({ problem: `cannot take the run lock: ${describeCause(error)}` }))
    )
    while (first.outcome._tag === "Busy") {
      // release the reserved connection now: a caller whose pool closes before this scope would wait for it
      yield* Scope.close(holder, Exit.void)
      if ((yield* Clock.currentTimeMillis) - startedAt >= graceMillis) {
        return yield* new MigrationLocked({ table: shown, tool: namespace, holders: first.outcome.holders })
      }
      yield* Effect.sleep("250 millis")
      holder = yield* Scope.fork(outer)
      const scope = holder
      first = yield* tryAcquire(namespace, table, options.shard, scope).pipe(
        Effect.onError(() => Scope.close(scope, Exit.void)),
        Effect.mapError((error) => new DatabaseUnavailable({ problem: `cannot take the run lock: ${describeCause(error)}` }))
      )
    }
    if (first.outcome._tag === "OtherCount") {
      yield* Scope.close(holder, Exit.void)
      return yield* new ShardCountConflict({ table: name, count: options.shard!.count, running: first.outcome.counts })
    }
    // every backend that held the lock for this run: one cut off from us may hold it on for a while
    const ownSessions = new Set([first.outcome.session])
    const current = yield* Ref.make({ connection: first.connection, scope: holder })
    const every = options.checkEvery ?? "2 seconds"

    // Keep-alive: a cheap statement on the lock's session; when the session is gone, take the lock
    // again. Returns false once the lock is lost for good (then the loop ends).
    const check: Effect.Effect<boolean, never, SqlClient.SqlClient> = Effect.gen(function*() {
      const held = yield* Ref.get(current)
      const alive = yield* held.connection.execute("SELECT 1", [], undefined).pipe(
        Effect.as(true),
        Effect.catch(() => Effect.succeed(false))
      )
      if (alive) return true
      yield* Scope.close(held.scope, Exit.void)
      // each attempt on a scope of its own, closed when it fails: a failed attempt must not keep the
      // connection it reserved (a flapping server would drain the pool otherwise)
      // A session lost on our side (a frozen path, a dropped connection) can live on at the server, holding
      // the lock, until the server notices: that holder is this run's own old backend, not another run.
      // It is ended (a role may end its own sessions) and the lock taken again on the next attempt.
      const attempt = Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const taken = yield* tryAcquire(namespace, table, options.shard, scope).pipe(
          Effect.map((taken) => ({ ...taken, scope })),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        const outcome = taken.outcome
        if (outcome._tag === "Busy" && outcome.holders.length > 0 && outcome.holders.every((h) => ownSessions.has(h.session))) {
          yield* Effect.logWarning(
            `the run lock on ${shown} is still held by this run's lost session (${outcome.holders.map((h) => h.description).join(", ")}): ending it`
          )
          yield* Effect.forEach(outcome.holders, (h) =>
            // only that very session: by pid and start time, in one statement
            taken.connection.execute(
              "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = $1::int4 AND backend_start::text = $2",
              [h.pid, h.session.slice(h.session.indexOf("@") + 1)],
              undefined
            ), { discard: true }).pipe(
            Effect.ensuring(Scope.close(scope, Exit.void))
          )
          return yield* new RetakeLater({ reason: "the run's own lost session still held the lock" })
        }
        if (outcome._tag === "Busy" && outcome.holders.length === 0) {
          // busy, yet nobody seen holding it: released between the two statements (or pg_locks unreadable)
          yield* Scope.close(scope, Exit.void)
          return yield* new RetakeLater({ reason: "the lock was busy but no holder was seen" })
        }
        if (outcome._tag === "Locked") ownSessions.add(outcome.session)
        return taken
      })
      const again = yield* attempt.pipe(Effect.retry(backoff(options.retry ?? defaultPolicy(6))))
      yield* Ref.set(current, { connection: again.connection, scope: again.scope })
      if (again.outcome._tag === "Locked") {
        yield* Effect.logWarning(`the run lock's session on ${shown} was lost; lock taken again`)
        return true
      }
      yield* Effect.logError(`the run lock on ${shown} was lost and another run holds it now: stopping`)
      yield* options.onLost
      return false
    }).pipe(
      // the lock could not be taken again: without it a second run could start beside this one
      Effect.catch((error) =>
        Effect.gen(function*() {
          const lost = new RunLockLost({ table: shown, problem: describeCause(error), tool: namespace })
          yield* Effect.logError(lost.message)
          yield* options.onFailed === undefined ? options.onLost : options.onFailed(lost)
          return false
        })
      )
    )
    const loop: Effect.Effect<void, never, SqlClient.SqlClient> = Effect.sleep(every).pipe(
      Effect.andThen(check),
      Effect.flatMap((go) => (go ? loop : Effect.void))
    )
    yield* Effect.forkIn(loop, outer)
  })
