/**
 * `sql.withTransaction` that keeps a lost connection a typed, retryable `SqlError`.
 *
 * When a statement inside a transaction fails, effect/sql runs ROLLBACK on the same connection and
 * turns a failing ROLLBACK into a defect (`Effect.orDie`). A connection killed mid-transaction
 * (`pg_terminate_backend`, a server restart, a cut network) fails both the statement and the ROLLBACK,
 * so the caller got a defect carrying `SqlError: PgConnection: Connection closed`: not retried, not
 * mapped to a `DatabaseError`, and reported as a bare driver message at the top of the CLI.
 *
 * A failed ROLLBACK only happens on a connection that is unusable, and the server aborts an
 * uncommitted transaction when its session ends, so nothing of the transaction was kept: the
 * `SqlError` is turned back into a failure, which the caller's retry policy (`statement`) retries or
 * reports. Other defects stay defects.
 */
import { Cause, Effect } from "effect"
import { type SqlClient, SqlError } from "effect/sql"

/** `cause` with each defect that is an `SqlError` turned back into a failure. */
export const sqlDefectsToFailures = <E>(cause: Cause.Cause<E>): Cause.Cause<E | SqlError.SqlError> =>
  Cause.fromReasons<E | SqlError.SqlError>(
    cause.reasons.map((reason) =>
      Cause.isDieReason(reason) && SqlError.isSqlError(reason.defect)
        ? Cause.makeFailReason(reason.defect).annotate(Cause.reasonAnnotations(reason))
        : reason
    )
  )

/** Runs `effect` in a transaction on `sql`; a lost connection fails with its `SqlError` instead of dying. */
export const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError.SqlError, R> =>
  sql.withTransaction(effect).pipe(
    Effect.catchCause((cause) =>
      Effect.failCause(
        cause.reasons.some((r) => Cause.isDieReason(r) && SqlError.isSqlError(r.defect))
          ? sqlDefectsToFailures(cause)
          : cause
      )
    )
  )
