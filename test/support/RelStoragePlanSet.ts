// The data set of the relstorage plan tests, and the figures plan must give for it: the same whether
// blob_state is in the source database or in another one (--dest-pg-url).
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { createLargeObject, randomBytes, unlinkLargeObject } from "./Nice2Fixture.ts"
import { insertBlob } from "./RelStorageFixture.ts"

/** Six blobs in an existing blob_chunk: three inline-sized, two for S3 (one of three chunks), one dangling, two sharing an oid. */
export const insertPlanDataSet = Effect.gen(function*() {
  yield* insertBlob(1, 10, [new TextEncoder().encode("small one")])
  yield* insertBlob(1, 11, [randomBytes(2000, 1)])
  yield* insertBlob(2, 10, [randomBytes(600, 2), randomBytes(600, 3), randomBytes(600, 4)])
  const dangling = yield* createLargeObject(randomBytes(50, 6))
  yield* insertBlob(3, 10, [dangling])
  yield* unlinkLargeObject(dangling)
  const shared = yield* createLargeObject(randomBytes(100, 7))
  yield* insertBlob(4, 10, [shared])
  yield* insertBlob(4, 11, [shared])
  return { dangling, shared }
})

/** What `plan --blob-threshold 1024` prints for the data set before any run. */
export const assertPlanFigures = (out: string, oids: { readonly dangling: number; readonly shared: number }) => {
  assert.match(out, /to migrate: +6  4009 bytes \(/)
  assert.match(out, /already migrated: +0  0 bytes/)
  assert.match(out, /\n  <= 1\.00 KiB +3  209 bytes/)
  assert.match(out, /\n  <= 16\.00 KiB +2  3800 bytes/)
  assert.match(out, /\n  size NULL +1/)
  assert.include(out, "at --blob-threshold 1024: 2 blob(s), 3800 bytes to S3; 3 blob(s), 209 bytes inline")
  assert.include(out, `dangling oids:  1 (e.g. 3/10 -> oid ${oids.dangling})`)
  assert.include(out, `oids shared by several rows (whole table): 1 oid(s) in 2 row(s) (e.g. oid ${oids.shared}: 4/10 4/11)`)
  assert.include(out, "blob_state does not exist yet")
  assert.match(out, /based on: \d+ sampled object\(s\)/)
}

/** What `migrate --dry-run` prints once a run has migrated all but the dangling blob. */
export const assertPlanFiguresAfterRun = (out: string) => {
  assert.match(out, /to migrate: +1  0 bytes/)
  assert.match(out, /already migrated: +5  4009 bytes/)
  assert.include(out, "0 blob(s), 0 bytes to S3; 0 blob(s), 0 bytes inline")
}
