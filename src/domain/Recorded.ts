/**
 * What a profile has recorded for a row, read back by `upload-blobs` to tell which manifest lines are
 * done. Each profile records something else: nice2 and table the SHA-256 (`sha2`, `--sha256-column`),
 * relstorage the S3 key (`blob_state.s3_key`; NULL for a blob stored inline). Each is compared with the
 * matching field of the manifest line, so "done" needs no state of its own in any profile.
 */

export type Recorded =
  /** the row exists and is not migrated yet */
  | { readonly _tag: "NotMigrated" }
  | { readonly _tag: "Sha256"; readonly sha256: string }
  /** null: the object is kept in the database itself (relstorage's inline blobs) */
  | { readonly _tag: "ObjectKey"; readonly objectKey: string | null }
  /** the key cannot name a row of this source (a manifest staged with other profile flags) */
  | { readonly _tag: "NotAKey"; readonly problem: string }

export const notMigrated: Recorded = { _tag: "NotMigrated" }
export const sha256 = (value: string): Recorded => ({ _tag: "Sha256", sha256: value })
export const objectKey = (value: string | null): Recorded => ({ _tag: "ObjectKey", objectKey: value })
export const notAKey = (problem: string): Recorded => ({ _tag: "NotAKey", problem })

/** Whether the row is migrated at all (with this line's object or another). */
export const isMigrated = (r: Recorded): boolean => r._tag === "Sha256" || r._tag === "ObjectKey"

/** Whether the row is migrated with exactly this manifest line's object. */
export const matches = (r: Recorded, line: { readonly sha256: string; readonly s3Key: string }): boolean =>
  r._tag === "Sha256" ? r.sha256 === line.sha256 : r._tag === "ObjectKey" ? r.objectKey === line.s3Key : false

/** For messages: what the row holds. */
export const describe = (r: Recorded): string =>
  r._tag === "Sha256"
    ? `SHA-256 ${r.sha256}`
    : r._tag === "ObjectKey"
    ? r.objectKey === null ? "its bytes inline (no S3 key)" : `S3 key ${r.objectKey}`
    : r._tag === "NotAKey"
    ? `no row: ${r.problem}`
    : "nothing (not migrated)"
