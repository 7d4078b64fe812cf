/**
 * What a profile provides: where the rows are, how to list the ones still to migrate, how to record
 * the result. Nothing else in the pipeline knows a table or column name.
 */
import { Context, Effect } from "effect"
import type { Result } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import {
  type BatchJobActive,
  DatabaseError,
  DatabaseUnavailable,
  describeCause,
  type SchemaMismatch
} from "../domain/Errors.ts"
import type { Candidate, RowFailure, Stored } from "../domain/LargeObject.ts"
import { retrying, type RetryPolicy } from "../pipeline/Retry.ts"
import type { Stats } from "../pipeline/Stats.ts"

/** One listed row: a candidate to migrate, or a failure found by looking at the row alone. */
export interface ListedRow {
  /** the paging key: the next page starts after the last row's key */
  readonly key: string
  readonly row: Result.Result<Candidate, RowFailure>
}

export interface CommitResult {
  /** objects whose row no longer exists: reported, never counted as migrated */
  readonly vanished: ReadonlyArray<Stored>
}

export class Source extends Context.Service<Source, {
  /** the table, as shown to users */
  readonly table: string
  /** checks the schema and what the profile requires, and adds the result column when missing */
  readonly prepare: Effect.Effect<void, SchemaMismatch | BatchJobActive | DatabaseUnavailable | DatabaseError>
  /** rows still to migrate, and all rows */
  readonly count: Effect.Effect<{ readonly remaining: number; readonly total: number }, DatabaseError>
  /** up to `limit` unmigrated rows with a key above `after`, in key order; one short statement each */
  readonly page: (after: string | undefined, limit: number) => Effect.Effect<ReadonlyArray<ListedRow>, DatabaseError>
  /** marks a chunk of stored objects as migrated, in one statement and one transaction */
  readonly commit: (chunk: ReadonlyArray<Stored>) => Effect.Effect<CommitResult, DatabaseError>
  /**
   * The result recorded for each of `keys` (null: not migrated); keys whose row no longer exists are
   * absent. `upload-blobs` uses it to tell manifest lines already done.
   */
  readonly recorded: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, string | null>, DatabaseError>
  /** after a clean run: makes the result column NOT NULL and unique */
  readonly finalize: Effect.Effect<void, DatabaseError | SchemaMismatch>
}>()("lo-migrate/source/Source") {}

/** Connection problems are worth retrying; anything else (syntax, permissions) is not. */
export const isRetryableSql = (error: SqlError.SqlError): boolean => error.isRetryable

/** Runs a statement with retries and turns a lasting failure into a `DatabaseError`. */
export const statement = <A, R>(
  operation: string,
  policy: RetryPolicy,
  effect: Effect.Effect<A, SqlError.SqlError, R>
): Effect.Effect<A, DatabaseError, R | Stats> =>
  retrying(effect, { policy, isRetryable: isRetryableSql, what: operation }).pipe(
    Effect.mapError((cause) => new DatabaseError({ operation, cause }))
  )

/** Where a PostgreSQL URL points, without its credentials, for error messages. */
export const describeUrl = (url: string): string => {
  try {
    const u = new URL(url)
    return `${u.username === "" ? "" : `${decodeURIComponent(u.username)}@`}${u.hostname}:${u.port || "5432"}${u.pathname}`
  } catch {
    return "the configured server"
  }
}

/**
 * The first contact with PostgreSQL: turns connection and authentication failures into a
 * `DatabaseUnavailable` that says what went wrong and where, never the password.
 */
export const checkConnection = (where: string): Effect.Effect<void, DatabaseUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1`.pipe(
      Effect.mapError((error) => {
        const tag = error.reason._tag
        const problem = tag === "AuthenticationError"
          ? `authentication failed at ${where}: ${describeCause(error)}`
          : tag === "ConnectionError"
          ? `cannot connect to ${where}: ${describeCause(error)}`
          : `${where}: ${describeCause(error)}`
        return new DatabaseUnavailable({ problem })
      })
    )
  })
