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
  type SchemaMismatch,
  type TableBusy
} from "../domain/Errors.ts"
import type { Candidate, RowFailure, Stored } from "../domain/LargeObject.ts"
import type { Recorded } from "../domain/Recorded.ts"
import type { Shard } from "../domain/Profile.ts"
import type { MigratedRow, Released } from "../domain/MigratedObject.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { RunKey } from "../postgres/RunKey.ts"
import { Stats } from "../core/Stats.ts"

/** One listed row: a candidate to migrate, or a failure found by looking at the row alone. */
export interface ListedRow {
  /** the paging key: the next page starts after the last row's key */
  readonly key: string
  readonly row: Result.Result<Candidate, RowFailure>
}

/** A listed row and the warning found while listing it (e.g. its content type had to be made header-safe). */
export type ListedWithWarning = readonly [ListedRow, string | undefined]

/** Logs a page's warnings, one per row that has one, and returns its rows. */
export const logWarnings = (rows: ReadonlyArray<ListedWithWarning>): Effect.Effect<ReadonlyArray<ListedRow>> =>
  Effect.as(
    Effect.forEach(rows, ([, warning]) => (warning === undefined ? Effect.void : Effect.logWarning(warning)), { discard: true }),
    rows.map(([row]) => row)
  )

export interface CommitResult {
  /** objects whose row no longer exists: reported, never counted as migrated */
  readonly vanished: ReadonlyArray<Stored>
  /**
   * objects whose row still exists but no longer holds what was read (another large object, another
   * result already recorded): not marked, reported as `row-changed` with `detail` (naming both oids)
   */
  readonly changed?: ReadonlyArray<{ readonly stored: Stored; readonly detail: string }> | undefined
}

/** Up to a few examples of a problem, and how many rows have it. */
export interface Examples<A> {
  readonly count: number
  readonly examples: ReadonlyArray<A>
}

/** Rows (and their bytes) whose size is at most `upTo` bytes and above the previous bucket's bound. */
export interface SizeBucket {
  /** inclusive upper bound in bytes; undefined for the last, unbounded bucket */
  readonly upTo: number | undefined
  readonly objects: number
  readonly bytes: bigint
}

/** What `plan` shows: counts, sizes and the problems found cheaply, read without writing anything. */
export interface Inventory {
  readonly total: number
  readonly migrated: number
  readonly remaining: number
  /** exact sums of the rows' sizes (bigint: a table can hold more than 2^53 bytes) */
  readonly totalBytes: bigint
  readonly migratedBytes: bigint
  readonly remainingBytes: bigint
  /** the rows to migrate, by size */
  readonly histogram: ReadonlyArray<SizeBucket>
  /** rows to migrate whose size is NULL */
  readonly unknownSize: number
  /** rows to migrate without a large object */
  readonly nullData: Examples<string>
  /** rows to migrate whose oid names no large object */
  readonly dangling: Examples<{ readonly key: string; readonly oid: number }>
  /** rows to migrate whose key is not what the profile expects */
  readonly malformedKeys: Examples<string>
  /** large objects referenced by several rows (whole table) */
  readonly sharedOids: {
    readonly oids: number
    readonly rows: number
    readonly examples: ReadonlyArray<{ readonly oid: number; readonly keys: ReadonlyArray<string> }>
  }
  /** profile-specific remarks, e.g. what `migrate` would refuse or change */
  readonly notes: ReadonlyArray<string>
}

export class Source extends Context.Service<Source, {
  /** the table, as shown to users */
  readonly table: string
  /** what the run lock and the watermark are keyed by: the table, its key columns, the result (RunKey.ts) */
  readonly runKey: Effect.Effect<RunKey, DatabaseError>
  /** the slice of the rows this source lists, counts and verifies (`--shard i/n`); undefined: all */
  readonly shard: Shard | undefined
  /** the S3 key of a candidate's object, given its SHA-256 hex */
  readonly objectKey: (candidate: Candidate, sha256: string) => string
  /** true: the object skips the store and its bytes go to `commit` (`Stored.inline`); default: never */
  readonly inline?: ((candidate: Candidate, size: number) => boolean) | undefined
  /** checks the schema and what the profile requires, and adds the result column when missing */
  readonly prepare: Effect.Effect<void, SchemaMismatch | BatchJobActive | DatabaseUnavailable | DatabaseError | TableBusy>
  /** rows still to migrate, and all rows */
  readonly count: Effect.Effect<{ readonly remaining: number; readonly total: number }, DatabaseError>
  /** up to `limit` unmigrated rows with a key above `after`, in key order; one short statement each */
  readonly page: (after: string | undefined, limit: number) => Effect.Effect<ReadonlyArray<ListedRow>, DatabaseError>
  /** marks a chunk of stored objects as migrated, in one statement and one transaction */
  readonly commit: (chunk: ReadonlyArray<Stored>) => Effect.Effect<CommitResult, DatabaseError>
  /**
   * What is recorded for each of `keys` (see Recorded.ts: the SHA-256 or the S3 key the profile writes,
   * `NotMigrated`, or `NotAKey` for a key this source cannot have); keys whose row no longer exists are
   * absent. `upload-blobs` uses it to tell manifest lines already done.
   */
  readonly recorded: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, Recorded>, DatabaseError>
  /** after a clean run: makes the result column NOT NULL and unique */
  readonly finalize: Effect.Effect<void, DatabaseError | SchemaMismatch | TableBusy>

  // After the copy (plan, verify, prune): everything below reads only, except `release`.

  /** counts, sizes (histogram bounds in bytes, ascending) and cheap problem checks; never writes */
  readonly inventory: (sizeBounds: ReadonlyArray<number>) => Effect.Effect<Inventory, SchemaMismatch | DatabaseError>
  /** up to `limit` rows to migrate that have a large object, from a random position in key order */
  readonly sample: (limit: number) => Effect.Effect<ReadonlyArray<Candidate>, SchemaMismatch | DatabaseError>
  /**
   * up to `limit` migrated rows with a key above `after`, in key order (keyset pages, one short
   * statement each); `withData`: only rows that still reference a large object. Empty when the result
   * column does not exist yet.
   */
  readonly migratedPage: (
    after: string | undefined,
    limit: number,
    options: { readonly withData: boolean }
  ) => Effect.Effect<ReadonlyArray<MigratedRow>, SchemaMismatch | DatabaseError>
  /** what `release` does to a row, as prune names it; default "data = NULL" */
  readonly releaseMeaning?: string | undefined
  /** what a row not migrated lacks, as prune names it; default "no sha2" */
  readonly unmigratedReason?: string | undefined
  /** rows not migrated that still reference a large object (prune leaves them alone), with examples */
  readonly unmigratedWithData: (
    limit: number
  ) => Effect.Effect<Examples<{ readonly key: string; readonly oid: number }>, SchemaMismatch | DatabaseError>
  /** every row referencing one of `oids`, and whether the large object exists */
  readonly references: (
    oids: ReadonlyArray<number>
  ) => Effect.Effect<ReadonlyArray<{ readonly oid: number; readonly key: string; readonly present: boolean }>, DatabaseError>
  /**
   * In one transaction: sets the reference of each verified row to NULL (only if the row still has the
   * oid and result that were verified) and unlinks the large objects no other row references. A crash
   * leaves either both or neither.
   */
  readonly release: (rows: ReadonlyArray<MigratedRow>) => Effect.Effect<Released, DatabaseError>
}>()("lo-migrate/source/Source") {}

/**
 * SQLSTATEs the driver does not mark retryable but that only say "this connection is gone, try again":
 * 57P01 admin_shutdown (pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now (the
 * server is starting or in recovery), 53300 too_many_connections.
 */
const transientSqlStates = new Set(["57P01", "57P02", "57P03", "53300"])

/** Connection problems are worth retrying; anything else (syntax, permissions) is not. */
export const isRetryableSql = (error: SqlError.SqlError): boolean => {
  if (error.isRetryable) return true
  const code = (error.reason.cause as { readonly code?: unknown } | undefined)?.code
  return typeof code === "string" && transientSqlStates.has(code)
}

/** Runs a statement with retries and turns a lasting failure into a `DatabaseError`. */
export const statement = <A, R>(
  operation: string,
  policy: RetryPolicy,
  effect: Effect.Effect<A, SqlError.SqlError, R>
): Effect.Effect<A, DatabaseError, R | Stats> =>
  retrying(effect, { policy, isRetryable: isRetryableSql, what: operation }).pipe(
    Effect.mapError((cause) => new DatabaseError({ operation, cause }))
  )

/** A statement runner for a profile's SQL: `statement` bound to its retry policy and the run's Stats. */
export type Runner = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) => Effect.Effect<A, DatabaseError>

export const runner = (policy: RetryPolicy): Effect.Effect<Runner, never, Stats> =>
  Effect.map(Stats, (stats): Runner => (operation, effect) =>
    statement(operation, policy, effect).pipe(Effect.provideService(Stats, stats)))

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
