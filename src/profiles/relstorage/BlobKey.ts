/**
 * The key a RelStorage blob travels under, `zoid/tid` in decimal, and its SQL forms: shared by the
 * relstorage profile's migration (RelStorageSource) and its plan/verify/prune (RelStorageLifecycle).
 */

/** `zoid/tid` in decimal. */
export const blobKey = (zoid: bigint | string, tid: bigint | string): string => `${zoid}/${tid}`

/** The key of a result row with `zoid` and `tid` columns. */
export const keyOf = (row: Record<string, unknown>): string => blobKey(String(row.zoid), String(row.tid))

export const splitKey = (key: string): readonly [string, string] => {
  const [zoid, tid] = key.split("/")
  return [zoid!, tid!]
}

/** Two parameters, `$n::bigint[]` of zoids and `$n+1::bigint[]` of tids, for `unnest`. */
export const keyArrays = (keys: ReadonlyArray<string>): [ReadonlyArray<string>, ReadonlyArray<string>] => [
  keys.map((k) => splitKey(k)[0]),
  keys.map((k) => splitKey(k)[1])
]

/** The keyset condition "after `key`" on `c.zoid, c.tid`, its parameters numbered from `$first`. */
export const afterKey = (key: string | undefined, first: number) =>
  key === undefined
    ? { text: "", params: [] as ReadonlyArray<unknown> }
    : { text: ` AND (c.zoid, c.tid) > ($${first}::bigint, $${first + 1}::bigint)`, params: splitKey(key) as ReadonlyArray<unknown> }

// ---- S3 keys ----------------------------------------------------------------------------------------
// zodb-pgjsonb stores `blobs/{zoid:016x}/{tid:016x}.blob` in blob_state.s3_key, without its s3-prefix:
// its S3 client (zodb-s3blobs S3Client._full_key) adds "{prefix}/" on every upload, download and delete.
// lo-migrate stores the same, and adds --s3-prefix back wherever it reads s3_key (verify, prune,
// upload-blobs). Versions before this one stored the key with the prefix: such a value (anything that is
// not zodb-pgjsonb's form) is taken as the whole bucket key, so those rows still verify, and
// `--finalize` rewrites them (RelStorageLifecycle.ts).

const hex16 = (n: bigint) => n.toString(16).padStart(16, "0")

/** `--s3-prefix` as zodb-pgjsonb's S3 client joins it: "" or "prefix/" (slashes at the end stripped) */
const prefixPart = (prefix: string | undefined) => {
  const p = (prefix ?? "").replace(/\/+$/, "")
  return p === "" ? "" : `${p}/`
}

/** What zodb-pgjsonb (and lo-migrate) record in blob_state.s3_key for a blob: no prefix. */
export const recordedS3Key = (zoid: bigint, tid: bigint): string => `blobs/${hex16(zoid)}/${hex16(tid)}.blob`

/** The bucket key of a blob: `[prefix/]blobs/{zoid:016x}/{tid:016x}.blob`. */
export const s3KeyOf = (prefix: string | undefined, zoid: bigint, tid: bigint): string =>
  `${prefixPart(prefix)}${recordedS3Key(zoid, tid)}`

/** zodb-pgjsonb's form of s3_key, as a regular expression (JavaScript and PostgreSQL alike) */
export const recordedPattern = "^blobs/[0-9a-f]{16}/[0-9a-f]{16}\\.blob$"
const recordedRegExp = new RegExp(recordedPattern)

/** Whether a stored s3_key has zodb-pgjsonb's form (else: an older lo-migrate's, prefix included). */
export const isRecordedForm = (stored: string): boolean => recordedRegExp.test(stored)

/** The bucket key a stored s3_key names under `--s3-prefix` (an older lo-migrate's key: itself). */
export const bucketKeyOf = (prefix: string | undefined, stored: string): string =>
  isRecordedForm(stored) ? `${prefixPart(prefix)}${stored}` : stored

/** The same in SQL, over the column `column`, with `$n` bound to `sqlPrefix(prefix)`. */
export const bucketKeySql = (column: string, param: string) =>
  `CASE WHEN ${column} ~ '${recordedPattern}' THEN ${param} || ${column} ELSE ${column} END`
export const sqlPrefix = (prefix: string | undefined): string => prefixPart(prefix)

/** What to record for an object stored under the bucket key `key`: the key without `prefix/`. */
export const recordedKeyOf = (prefix: string | undefined, key: string): string => {
  const p = prefixPart(prefix)
  return p !== "" && key.startsWith(p) ? key.slice(p.length) : key
}
