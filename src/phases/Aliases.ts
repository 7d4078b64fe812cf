/**
 * Rows that share one source object (a large object referenced by several rows, or RelStorage blobs
 * made of the same chunks) are read once: the listing hands out one candidate, the "primary", with the
 * other rows as its `aliases`. The receiver reads and checks the bytes once; the storer stores them
 * under each row's object key (one PUT per distinct key) and hands one `Stored` per row to the
 * committers, so every row is still marked only after its own object is in S3.
 *
 * Only rows whose claims are the primary's (same size, same expected SHA-1) become aliases: the one
 * check of the bytes then holds for every row of the group. A row that claims something else is listed
 * on its own, read again, and fails (or passes) by itself.
 */
import { Effect, Result } from "effect"
import type { Candidate, RowFailure } from "../domain/LargeObject.ts"
import type { ListedRow } from "./CopySource.ts"
import type { WatermarkTracker } from "../pipeline/Watermark.ts"

/** The candidate and its aliases: every row the one read serves. */
export const rowsOf = (candidate: Candidate): ReadonlyArray<Candidate> =>
  candidate.aliases === undefined || candidate.aliases.length === 0 ? [candidate] : [candidate, ...candidate.aliases]

/** What the bytes are read from; undefined for a row without an object (never grouped). */
const sourceOf = (candidate: Candidate): string | undefined =>
  candidate.oid === null ? undefined : (candidate.oids ?? [candidate.oid]).join(",")

const sameClaims = (a: Candidate, b: Candidate) =>
  a.size === b.size && a.sizeUnknown === b.sizeUnknown && a.expectedSha1 === b.expectedSha1

/** A failure of the primary's read is every alias's too, each named with its own key. */
export const failuresOf = (candidate: Candidate | undefined, failure: RowFailure): ReadonlyArray<RowFailure> =>
  candidate === undefined || candidate.aliases === undefined ? [failure] : [
    failure,
    ...candidate.aliases.map((alias): RowFailure => ({
      ...failure,
      key: alias.key,
      oid: alias.oid,
      detail: `${failure.detail} (its object is read from the same large object(s) as row ${candidate.key})`
    }))
  ]

/** Candidates that carry aliases, by key: to find a failed read's aliases. */
export const byKey = (candidates: ReadonlyArray<Candidate>): ReadonlyMap<string, Candidate> =>
  new Map(candidates.filter((c) => c.aliases !== undefined && c.aliases.length > 0).map((c) => [c.key, c]))

/** Builds the rows of one listing: each row is a new primary, or an alias of an earlier row. */
export const grouping = () => {
  const rows: Array<ListedRow> = []
  const groups = new Map<string, { readonly index: number; readonly primary: Candidate; readonly aliases: Array<Candidate> }>()
  const keys = new Set<string>()
  // aliases that come after the last listed row in key order: the next page would list them again
  let beyond: Array<string> = []
  return {
    /** listed rows so far (primaries and rows that failed at listing) */
    get size() {
      return rows.length
    },
    /** the key of the last listed row: the next page starts after it */
    last: (): string | undefined => rows[rows.length - 1]?.key,
    /** adds a listed row (in key order): a new primary, or an alias of an earlier row with the same source and claims */
    add: (row: ListedRow): void => {
      keys.add(row.key)
      if (Result.isSuccess(row.row)) {
        const candidate = row.row.success
        const source = sourceOf(candidate)
        const group = source === undefined ? undefined : groups.get(source)
        if (group !== undefined && sameClaims(group.primary, candidate)) {
          group.aliases.push(candidate)
          beyond.push(candidate.key)
          return
        }
        if (source !== undefined && group === undefined) {
          groups.set(source, { index: rows.length, primary: candidate, aliases: [] })
        }
      }
      rows.push(row)
      beyond = []
    },
    /**
     * Adds a row found beyond the listing (a key after the last row) as an alias of the listed row with
     * the same oids; its claims are that row's (the caller knows they are: same oids, same moment).
     * Returns false when no listed row has these oids, or the row was added already.
     */
    addAlias: (key: string, oids: ReadonlyArray<number>): boolean => {
      const group = keys.has(key) ? undefined : groups.get(oids.join(","))
      if (group === undefined) return false
      keys.add(key)
      group.aliases.push({ ...group.primary, key, oid: oids[0] ?? null, oids, aliases: undefined })
      beyond.push(key)
      return true
    },
    /** the keys of the aliases after the last listed row */
    beyondLast: (): ReadonlyArray<string> => beyond,
    /** the oid lists of the listed candidates */
    sources: (): ReadonlyArray<ReadonlyArray<number>> =>
      [...groups.values()].map((g) => g.primary.oids ?? (g.primary.oid === null ? [] : [g.primary.oid])),
    /** the listing: primaries carry their aliases */
    result: (): ReadonlyArray<ListedRow> => {
      const out = [...rows]
      for (const group of groups.values()) {
        if (group.aliases.length === 0) continue
        out[group.index] = { key: out[group.index]!.key, row: Result.succeed({ ...group.primary, aliases: [...group.aliases] }) }
      }
      return out
    }
  }
}

/**
 * A source's `page` that groups rows sharing a source. Pages stay full (`limit` rows unless the source
 * is exhausted: the observer takes a short page as the end), and the next page starts after the last
 * listed row, so aliases beyond it are remembered until the listing passes them and are skipped then:
 * only shared rows are kept, at most about `limit` more per page. A page that does not continue the
 * previous one starts a new listing (a new run on the same layer): what an earlier listing handed out
 * may never have been committed, so it is forgotten and listed again.
 */
export const pager = <E, R>(options: {
  /** up to `limit` rows after `after`, in key order, as the table has them (migrated ones may be among them) */
  readonly list: (after: string | undefined, limit: number) => Effect.Effect<ReadonlyArray<ListedRow>, E, R>
  /** which of `keys` are migrated already, when `list` cannot leave them out itself */
  readonly migrated?: ((keys: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, E, R>) | undefined
  /** rows after `last`, not migrated, made of one of the oid lists `sources` (at most `limit`) */
  readonly sharing?:
    | ((last: string, sources: ReadonlyArray<ReadonlyArray<number>>, limit: number) => Effect.Effect<
      ReadonlyArray<{ readonly key: string; readonly oids: ReadonlyArray<number> }>,
      E,
      R
    >)
    | undefined
}) => {
  const handedOut = new Set<string>()
  let cursor: string | undefined
  let listing = false
  const none: ReadonlySet<string> = new Set()
  const migrated = (keys: ReadonlyArray<string>) =>
    options.migrated === undefined || keys.length === 0 ? Effect.succeed(none) : options.migrated(keys)
  return (after: string | undefined, limit: number): Effect.Effect<ReadonlyArray<ListedRow>, E, R> =>
    Effect.gen(function*() {
      if (!listing || after !== cursor) handedOut.clear()
      listing = true
      const rows = grouping()
      let from = after
      while (rows.size < limit) {
        const want = limit - rows.size
        const listed = yield* options.list(from, want)
        const done = yield* migrated(listed.map((r) => r.key))
        for (const row of listed) {
          // handed out with an earlier page's row
          if (handedOut.delete(row.key)) continue
          if (!done.has(row.key)) rows.add(row)
        }
        if (listed.length < want) break
        from = listed[listed.length - 1]!.key
      }
      const last = rows.last()
      if (last !== undefined && options.sharing !== undefined) {
        const found = (yield* options.sharing(last, rows.sources(), limit)).filter((r) => !handedOut.has(r.key))
        const done = yield* migrated(found.map((r) => r.key))
        for (const r of found) if (!done.has(r.key)) rows.addAlias(r.key, r.oids)
      }
      for (const key of rows.beyondLast()) handedOut.add(key)
      cursor = last ?? after
      return rows.result()
    })
}

/**
 * The watermark tracker as seen through groups: a group is listed at its primary's position and counts
 * as committed only once every one of its rows is. An alias's own key is never a watermark: an alias
 * may lie beyond the page (a later key), and a watermark there would let a resumed run skip the rows
 * in between.
 */
export interface GroupTracker extends WatermarkTracker {
  /** a listed candidate that carries aliases (after `listed` of its key) */
  readonly grouped: (candidate: Candidate) => void
}

export const groupTracker = (inner: WatermarkTracker): GroupTracker => {
  // only groups in flight: primary key -> rows not yet committed; alias key -> primary key
  const left = new Map<string, number>()
  const owner = new Map<string, string>()
  return {
    ...inner,
    grouped: (candidate) => {
      const aliases = candidate.aliases ?? []
      if (aliases.length === 0) return
      left.set(candidate.key, aliases.length + 1)
      for (const alias of aliases) owner.set(alias.key, candidate.key)
    },
    committed: (key) => {
      const primary = owner.get(key) ?? key
      owner.delete(key)
      const n = left.get(primary)
      if (n === undefined) return inner.committed(key)
      if (n > 1) return void left.set(primary, n - 1)
      left.delete(primary)
      inner.committed(primary)
    },
    failed: (key) => inner.failed(owner.get(key) ?? key)
  }
}
