/**
 * The copy phase of a profile (migrate and upload-blobs): where the rows are, how to list the ones
 * still to migrate, how to record the result. Nothing else in the pipeline knows a table or column name.
 */
import { Context, Effect } from "effect"
import type { Result } from "effect"
import type { BatchJobActive, DatabaseError, DatabaseUnavailable, MissingGrant, SchemaMismatch, TableBusy } from "../domain/Errors.ts"
import type { Candidate, RowFailure, Stored } from "../domain/LargeObject.ts"
import type { Recorded } from "../domain/Recorded.ts"
import type { Shard } from "../domain/Profile.ts"
import type { RunKey } from "../postgres/RunKey.ts"

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

export class CopySource extends Context.Service<CopySource, {
  /** the table, as shown to users */
  readonly table: string
  /** what the run lock and the watermark are keyed by: the table, its key columns, the result (RunKey.ts) */
  readonly runKey: Effect.Effect<RunKey, DatabaseError>
  /** the slice of the rows this source lists and counts (`--shard i/n`); undefined: all */
  readonly shard: Shard | undefined
  /** the S3 key of a candidate's object, given its SHA-256 hex */
  readonly objectKey: (candidate: Candidate, sha256: string) => string
  /** true: the object skips the store and its bytes go to `commit` (`Stored.inline`); default: never */
  readonly inline?: ((candidate: Candidate, size: number) => boolean) | undefined
  /** checks the schema and what the profile requires, and adds the result column when missing */
  readonly prepare: Effect.Effect<void, SchemaMismatch | MissingGrant | BatchJobActive | DatabaseUnavailable | DatabaseError | TableBusy>
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
  readonly finalize: Effect.Effect<void, DatabaseError | SchemaMismatch | MissingGrant | TableBusy>
}>()("lo-migrate/phases/CopySource") {}
