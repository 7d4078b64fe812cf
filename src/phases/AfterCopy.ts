/**
 * What follows the copy (verify and prune): the migrated rows, read in keyset pages, and `release`, the
 * one write, which drops the source's copy of rows proven in S3.
 */
import { Context, type Effect } from "effect"
import type { DatabaseError, MissingGrant, PruneRefused, SchemaMismatch } from "../domain/Errors.ts"
import type { MigratedRow, MigratedTotals, Released } from "../domain/MigratedObject.ts"
import type { Examples } from "./PlanSource.ts"

export class AfterCopy extends Context.Service<AfterCopy, {
  /** the table, as shown to users */
  readonly table: string
  /**
   * up to `limit` migrated rows with a key above `after`, in key order (keyset pages, one short
   * statement each); `withData`: only rows that still reference a large object. Empty when the result
   * column does not exist yet.
   */
  readonly migratedPage: (
    after: string | undefined,
    limit: number,
    options: { readonly withData: boolean }
  ) => Effect.Effect<ReadonlyArray<MigratedRow>, SchemaMismatch | MissingGrant | DatabaseError>
  /**
   * how many rows `migratedPage` lists after `after` with these options, and the sum of their sizes, in
   * one cheap statement before the work starts (progress shows done of it); a part the profile cannot
   * count cheaply is undefined
   */
  readonly migratedTotals: (
    after: string | undefined,
    options: { readonly withData: boolean }
  ) => Effect.Effect<MigratedTotals, SchemaMismatch | MissingGrant | DatabaseError>
  /** what `release` does to a row, as prune names it (e.g. "data = NULL") */
  readonly releaseMeaning: string
  /** what a row not migrated lacks, as prune names it (e.g. "no sha2") */
  readonly unmigratedReason: string
  /** rows not migrated that still reference a large object (prune leaves them alone), with examples */
  readonly unmigratedWithData: (
    limit: number
  ) => Effect.Effect<Examples<{ readonly key: string; readonly oid: number }>, SchemaMismatch | MissingGrant | DatabaseError>
  /** every row referencing one of `oids`, and whether the large object exists */
  readonly references: (
    oids: ReadonlyArray<number>
  ) => Effect.Effect<ReadonlyArray<{ readonly oid: number; readonly key: string; readonly present: boolean }>, DatabaseError>
  /**
   * In one transaction: sets the reference of each verified row to NULL (only if the row still has the
   * oid and result that were verified) and unlinks the large objects no other row references. A crash
   * leaves either both or neither.
   */
  readonly release: (rows: ReadonlyArray<MigratedRow>) => Effect.Effect<Released, DatabaseError | PruneRefused>
  /**
   * prune's pre-flight, before anything is checked or changed: what releasing needs (relstorage: an index
   * on blob_chunk(chunk), created with `createIndex`). `apply` false (a dry run): only notes, nothing is
   * created or refused. The notes are printed.
   */
  readonly preparePrune: (
    options: { readonly apply: boolean; readonly createIndex: boolean }
  ) => Effect.Effect<ReadonlyArray<string>, DatabaseError | SchemaMismatch | MissingGrant | PruneRefused>
}>()("lo-migrate/phases/AfterCopy") {}
