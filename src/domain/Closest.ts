/**
 * "Did you mean": the known name closest to a mistyped one, by edit distance, when it is close enough
 * to be a typo. Used by lo-migrate's settings files and zodb-convert's ZConfig files.
 */

/** Levenshtein distance: insertions, deletions and substitutions of one character each cost one. */
export const editDistance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return row[b.length]!
}

/**
 * The candidate closest to `name` once both are normalized, if it is at most `max(least, a quarter of
 * name's length)` edits away.
 */
export const closest = (
  name: string,
  candidates: ReadonlyArray<string>,
  options: { readonly normalize: (s: string) => string; readonly least: number }
): string | undefined => {
  let best: string | undefined
  let bestDistance = Infinity
  const normalized = options.normalize(name)
  for (const c of candidates) {
    const d = editDistance(normalized, options.normalize(c))
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return best !== undefined && bestDistance <= Math.max(options.least, Math.floor(name.length / 4)) ? best : undefined
}
