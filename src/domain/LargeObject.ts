/**
 * What flows through the pipeline: a candidate row, the object read from PostgreSQL, the object in S3.
 */
import type { Payload } from "./Payload.ts"

/** A row still to migrate, as the observer lists it. */
export interface Candidate {
  /** The row key exactly as stored (Nice2: the SHA-1 hex in `hash`); used verbatim in the UPDATE. */
  readonly key: string
  /** The large object, or null when the row's data column is NULL. */
  readonly oid: number | null
  /** Several large objects whose bytes, concatenated in this order, are the object (RelStorage's chunks). */
  readonly oids?: ReadonlyArray<number> | undefined
  /** The size the row claims, in bytes (0 when `sizeUnknown`). */
  readonly size: number
  /**
   * The row gives no size (NULL): unknown, never taken as 0. Such an object is read into a temp file
   * (no claim bounds the memory it would need) and its real length is its size.
   */
  readonly sizeUnknown?: boolean | undefined
  readonly contentType: string
  /** The SHA-1 the bytes must have, lowercase hex; undefined when the profile has none to check. */
  readonly expectedSha1: string | undefined
  /**
   * Other rows whose object has exactly this source (same oids in the same order) and the same claims
   * (size, SHA-1): the bytes are read once for all of them, each row is stored and committed as its own
   * (see pipeline/Aliases.ts). Aliases have no aliases of their own.
   */
  readonly aliases?: ReadonlyArray<Candidate> | undefined
}

export interface Digests {
  readonly sha1: string
  readonly sha256: string
  /**
   * base64 MD5 of the whole object, sent as Content-MD5 on single PUTs; not computed for an object
   * that will go in parts (`partMd5s`): S3 checks each part's MD5, never the whole object's
   */
  readonly md5?: string | undefined
  /** the MD5 of each part of `partSize` bytes, for an object larger than one part */
  readonly partMd5s?: PartMd5s | undefined
}

export interface PartMd5s {
  readonly partSize: number
  /** base64, in part order */
  readonly md5s: ReadonlyArray<string>
}

/** A candidate whose bytes were read, checked and staged. */
export interface Received {
  readonly candidate: Candidate
  readonly digests: Digests
  readonly payload: Payload
}

/** A candidate whose object S3 has accepted with the right bytes: only now may its row be marked. */
export interface Stored {
  readonly candidate: Candidate
  readonly sha256: string
  /** the S3 key; unused for an inline object */
  readonly key: string
  /** the bytes, when the profile stores this object in the database instead of S3 (no PUT was made) */
  readonly inline?: Uint8Array | undefined
}

export type FailureReason =
  | "malformed-key"
  | "null-data"
  | "missing-object"
  | "size-mismatch"
  | "sha1-mismatch"
  | "row-vanished"
  /** the row is still there but no longer holds what was read (another large object): not marked */
  | "row-changed"
  | "permission-denied"
  | "unreadable"
  | "commit-refused"
  | "staged-file-missing"
  | "staged-file-corrupt"
  | "manifest-line-malformed"
  | "manifest-mismatch"

/** A row skipped by this run; the run goes on and ends with exit code 1. */
export interface RowFailure {
  readonly key: string
  readonly oid: number | null
  readonly reason: FailureReason
  readonly detail: string
}

/** Nice2 keys are SHA-1 hex digests: 40 hex characters (either case is accepted). */
export const isSha1Hex = (s: string): boolean => /^[0-9a-fA-F]{40}$/.test(s)

/** The S3 key of an object: its lowercase hex SHA-256, as the original tool chose. */
export const objectKey = (sha256: string): string => sha256
