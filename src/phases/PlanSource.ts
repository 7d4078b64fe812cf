/** What `plan` reads of a profile's rows: counts, sizes, cheap problem checks and a sample. It never writes. */
import { Context, type Effect } from "effect"
import type { DatabaseError, MissingGrant, SchemaMismatch } from "../domain/Errors.ts"
import type { Candidate } from "../domain/LargeObject.ts"

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

export class PlanSource extends Context.Service<PlanSource, {
  /** the table, as shown to users */
  readonly table: string
  /** counts, sizes (histogram bounds in bytes, ascending) and cheap problem checks; never writes */
  readonly inventory: (sizeBounds: ReadonlyArray<number>) => Effect.Effect<Inventory, SchemaMismatch | MissingGrant | DatabaseError>
  /** up to `limit` rows to migrate that have a large object, from a random position in key order */
  readonly sample: (limit: number) => Effect.Effect<ReadonlyArray<Candidate>, SchemaMismatch | MissingGrant | DatabaseError>
}>()("lo-migrate/phases/PlanSource") {}
