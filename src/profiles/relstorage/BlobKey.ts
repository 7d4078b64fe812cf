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
