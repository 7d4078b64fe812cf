/**
 * The observer lists the rows still to migrate, page by page in key order (keyset pagination), so that
 * no snapshot is held for the whole run and a resumed run sees everything not yet marked.
 */
import { Cause, Effect } from "effect"
import type { DatabaseError } from "../domain/Errors.ts"
import type { CopySource, ListedRow } from "../phases/CopySource.ts"

export interface ObserverOptions {
  readonly pageSize: number
  /** stop after this many candidates (a trial run); undefined: no limit */
  readonly limit?: number | undefined
  /** true once a graceful stop was asked for: list nothing more */
  readonly stopping: Effect.Effect<boolean>
  /** list only keys after this one (a resume watermark); undefined: from the start */
  readonly start?: string | undefined
}

/**
 * The observer's unit of work: the next page of rows. Fails with `Done` when the table is exhausted,
 * the limit is reached, or a stop was asked for.
 */
export const pages = (
  source: CopySource["Service"],
  options: ObserverOptions
): Effect.Effect<Effect.Effect<ReadonlyArray<ListedRow>, Cause.Done | DatabaseError>> =>
  Effect.sync(() => {
    let after: string | undefined = options.start
    let exhausted = false
    let listed = 0
    return Effect.gen(function*() {
      if (exhausted || (yield* options.stopping)) return yield* Cause.done()
      const want = options.limit === undefined ? options.pageSize : Math.min(options.pageSize, options.limit - listed)
      if (want <= 0) return yield* Cause.done()
      const rows = yield* source.page(after, want)
      if (rows.length < want) exhausted = true
      if (rows.length === 0) return yield* Cause.done()
      after = rows[rows.length - 1]!.key
      listed += rows.length
      return rows
    })
  })
