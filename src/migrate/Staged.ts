/**
 * The source as the deferred mode's staging run sees it: rows already in the manifest are not listed
 * again, and no staged row is marked (staged rows are marked by `upload-blobs`, after their upload).
 *
 * Objects the profile keeps in the database (`CopySource.inline`: relstorage's small blobs) need no S3, so
 * nothing is staged for them: the staging run records them itself, by the profile's own commit, and
 * they are never listed again.
 */
import { Effect } from "effect"
import type { Stored } from "../domain/LargeObject.ts"
import type { CopySource, ListedRow } from "../phases/CopySource.ts"

export const stagingView = (
  source: CopySource["Service"],
  isStaged: (key: string) => boolean,
  /** told of the inline objects recorded (vanished and changed ones excluded) */
  onInline: (recorded: ReadonlyArray<Stored>) => Effect.Effect<void> = () => Effect.void
): CopySource["Service"] => ({
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
  commit: (chunk) => {
    const inline = chunk.filter((s) => s.inline !== undefined)
    if (inline.length === 0) return Effect.succeed({ vanished: [] })
    return Effect.tap(source.commit(inline), ({ vanished, changed = [] }) => {
      const gone = new Set([...vanished, ...changed.map((c) => c.stored)])
      return onInline(inline.filter((s) => !gone.has(s)))
    })
  }
})
