/**
 * The source as the deferred mode's staging run sees it: rows already in the manifest are not listed
 * again, and nothing is marked (rows are marked by `upload-blobs`, after their upload).
 */
import { Effect } from "effect"
import type { ListedRow, Source } from "./Source.ts"

export const stagingView = (source: Source["Service"], isStaged: (key: string) => boolean): Source["Service"] => ({
  ...source,
  // Pages stay full (`limit` rows unless the table is exhausted): the observer takes a short page as the end.
  page: (after, limit) =>
    Effect.gen(function*() {
      const out: Array<ListedRow> = []
      let from = after
      while (out.length < limit) {
        const want = limit - out.length
        const rows = yield* source.page(from, want)
        for (const row of rows) if (!isStaged(row.key)) out.push(row)
        if (rows.length < want) break
        from = rows[rows.length - 1]!.key
      }
      return out
    }),
  commit: () => Effect.succeed({ vanished: [] })
})
