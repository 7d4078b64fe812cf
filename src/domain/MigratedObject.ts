/**
 * After the copy: a migrated row, the checks it can fail, and what pruning did with its large object.
 */

/** A row marked migrated: its object should be in the store under `objectKey(sha256)`. */
export interface MigratedRow {
  /** the row key exactly as stored (Nice2: `hash`) */
  readonly key: string
  /** the large object still referenced by the row, or null once pruned */
  readonly oid: number | null
  /** the size the row claims, in bytes; undefined when the profile knows none (then HEAD's size is taken) */
  readonly size: number | undefined
  /** the recorded SHA-256 (Nice2: `sha2`), as stored; undefined when the profile records none (relstorage) */
  readonly sha256: string | undefined
  /** the store key, when the profile does not key objects by their SHA-256 (`--key-template`) */
  readonly objectKey?: string | undefined
  /**
   * every large object the content is made of, in order, when there are several (relstorage: a blob's
   * chunks, concatenated in chunk_num order); absent: just `oid`
   */
  readonly oids?: ReadonlyArray<number> | undefined
  /** the length of each of `oids` (prune's freed bytes); absent: `size` for the single oid */
  readonly oidSizes?: ReadonlyArray<number> | undefined
  /**
   * the copy is stored in the database itself, not in the object store (relstorage's inline blobs in
   * `blob_state.data`): its length, and its SHA-256 as computed by PostgreSQL; length null: no data
   */
  readonly inline?: { readonly length: number | null; readonly sha256: string | null } | undefined
}

/** The large objects a row's content is made of, in order (none once pruned). */
/**
 * How many migrated rows (and their recorded bytes) a verify or prune has ahead of it, counted before
 * it starts; a part the profile cannot count cheaply, or that was not counted, is undefined (shown as
 * `?`, never guessed).
 */
export interface MigratedTotals {
  readonly rows: number | undefined
  readonly bytes: number | undefined
}

export const uncounted: MigratedTotals = { rows: undefined, bytes: undefined }

export const oidsOf = (row: MigratedRow): ReadonlyArray<number> => row.oids ?? (row.oid === null ? [] : [row.oid])

/** The bytes large object `oid` holds for `row` (its part of the content). */
export const bytesOfOid = (row: MigratedRow, oid: number): number => {
  const oids = oidsOf(row)
  if (oids.length <= 1) return row.size ?? 0
  const i = oids.indexOf(oid)
  return i < 0 ? 0 : row.oidSizes?.[i] ?? 0
}

/** How thoroughly an object is checked. */
export type VerifyLevel =
  /** HEAD: the object exists, its size equals the row's, its sha256 metadata equals the row's sha2 */
  | "head"
  /** HEAD, then download and hash every byte */
  | "deep"
  /** deep, and re-read the large object and compare its SHA-256 with the row's */
  | "source"

export const describeLevel = (level: VerifyLevel): string =>
  level === "head"
    ? "HEAD: existence, size, sha256 metadata"
    : level === "deep"
    ? "deep: HEAD checks plus the SHA-256 of the downloaded bytes"
    : "deep against the source: HEAD checks, the SHA-256 of the downloaded bytes and of the large object"

export type Problem =
  | "malformed-sha2"
  | "missing-object"
  | "size-mismatch"
  | "sha256-metadata-mismatch"
  | "content-mismatch"
  | "source-missing"
  | "source-mismatch"

/** A migrated row whose object failed a check: named in the output, never pruned or finalized. */
export interface BadObject {
  readonly row: MigratedRow
  /** the store key the row points at */
  readonly objectKey: string
  readonly problem: Problem
  readonly detail: string
}

/** Lowercase hex of 64 digits. */
export const isSha256Hex = (s: string): boolean => /^[0-9a-fA-F]{64}$/.test(s)

/** The store key of a migrated row (lowercase hex SHA-256, as the migration writes it). */
export const objectKeyOf = (row: MigratedRow): string => row.objectKey ?? (row.sha256 ?? "").trim().toLowerCase()

/** "oid 123", or "oids 1,2,3" for content made of several large objects */
export const describeOids = (row: MigratedRow): string => {
  const oids = oidsOf(row)
  return oids.length > 1 ? `oids ${oids.join(",")}` : `oid ${row.oid ?? "NULL"}`
}

export const describeBad = (bad: BadObject): string =>
  `${bad.row.key.trim()} (${describeOids(bad.row)}, object ${bad.objectKey}): ${bad.problem}: ${bad.detail}`

/** What one prune transaction did. */
export interface Released {
  /** rows whose `data` was set to NULL */
  readonly released: ReadonlyArray<MigratedRow>
  /** rows that changed since they were verified (data or sha2 differ): left alone */
  readonly changed: ReadonlyArray<MigratedRow>
  /** large objects unlinked, with the bytes they held (the row's size) */
  readonly unlinked: ReadonlyArray<{ readonly oid: number; readonly bytes: number }>
  /** large objects kept because other rows still reference them */
  readonly kept: ReadonlyArray<{ readonly oid: number; readonly referencedBy: ReadonlyArray<string> }>
  /** oids that named no large object (dangling): nothing to unlink */
  readonly absent: ReadonlyArray<number>
}
