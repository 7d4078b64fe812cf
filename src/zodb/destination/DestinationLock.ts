/**
 * One writer at a time per destination: a copy and an `--upload-blobs` take the destination's run lock
 * (RunLock: a session-level advisory lock on a reserved connection, freed by the server when the process
 * dies) before they look at or create anything, so two of them never write into one destination at
 * once. The key is the database (advisory locks are per database) and `current_schema()`, the schema the
 * destination's tables live in, so two destinations in two schemas of one database do not exclude each
 * other. `--verify` and `--dry-run` only read, and take no lock.
 *
 * If the lock's session is killed, the lock is taken again on a new one; if another run got it in
 * between, `lost` turns true and the run stops as on a signal, with what it committed kept, and ends
 * with LockTakenOver (exit 1). If it cannot be taken again at all, `failure` fails with RunLockLost.
 */
import { Context, Data, Deferred, Effect, Layer, Ref, Runtime } from "effect"
import { SqlClient } from "effect/sql"
import { type RetryPolicy } from "../../core/Retry.ts"
import { DatabaseUnavailable, describeCause, type MigrationLocked, type RunLockLost, type ShardCountConflict } from "../../domain/Errors.ts"
import * as RunLock from "../../postgres/RunLock.ts"

export const namespace = "zodb-convert"

export interface DestinationLockShape {
  /** where the lock is, as messages name it: `database zodb schema public` */
  readonly where: string
  /** true once another run holds the lock: stop as on a signal */
  readonly lost: Effect.Effect<boolean>
  /** completes once another run holds the lock */
  readonly takenOver: Effect.Effect<void>
  /** fails when the lock was lost and could not be taken again; never succeeds */
  readonly failure: Effect.Effect<never, RunLockLost>
}

export class DestinationLock extends Context.Service<DestinationLock, DestinationLockShape>()(
  "zodb-convert/destination/DestinationLock"
) {
  /** Takes the lock for the layer's lifetime, or fails with MigrationLocked naming the session that has it. */
  static readonly layer = (options: { readonly retry: RetryPolicy; readonly checkEvery?: `${number} seconds` }): Layer.Layer<
    DestinationLock,
    MigrationLocked | DatabaseUnavailable,
    SqlClient.SqlClient
  > =>
    Layer.effect(
      DestinationLock,
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [at] = yield* sql.unsafe<{ db: string; schema: string | null }>(
          `SELECT current_database()::text AS db, current_schema()::text AS schema`
        ).pipe(Effect.mapError((error) => new DatabaseUnavailable({ problem: `cannot take the run lock: ${describeCause(error)}` })))
        const schema = at?.schema ?? "(none)"
        const where = `destination database ${at?.db ?? "?"} schema ${schema}`
        const lost = yield* Ref.make(false)
        const takenOver = yield* Deferred.make<void>()
        const failed = yield* Deferred.make<never, RunLockLost>()
        yield* RunLock.acquire(`destination ${schema}`, {
          namespace,
          shown: where,
          retry: options.retry,
          ...(options.checkEvery === undefined ? {} : { checkEvery: options.checkEvery }),
          onLost: Effect.andThen(Ref.set(lost, true), Deferred.succeed(takenOver, undefined)),
          onFailed: (error) => Deferred.fail(failed, error).pipe(Effect.asVoid)
        }).pipe(
          // no shard, so no shard count to conflict with
          Effect.catchTag("ShardCountConflict", (e: ShardCountConflict) => Effect.die(e))
        )
        return DestinationLock.of({ where, lost: Ref.get(lost), takenOver: Deferred.await(takenOver), failure: Deferred.await(failed) })
      })
    )
}

/** Another run took the destination's lock while this one worked (its session had been lost). */
export class LockTakenOver extends Data.TaggedError("LockTakenOver")<{
  readonly where: string
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `stopped: another zodb-convert run took the run lock of ${this.where} after this run's session was lost; ` +
      `what this run committed stays: let the other run finish, then rerun with --incremental if it did not`
  }
}

/** Fails with LockTakenOver once another run took the lock, or with RunLockLost; never succeeds. */
export const watch = (lock: DestinationLockShape): Effect.Effect<never, LockTakenOver | RunLockLost> =>
  Effect.raceFirst(lock.failure, Effect.andThen(lock.takenOver, Effect.fail(new LockTakenOver({ where: lock.where }))))
