// zodb-convert killed at any instant, then rerun with --incremental, gives the same destination as one
// clean run: every table compared row by row (a digest of each table's rows in key order). The kill
// points are random (fast-check), over the fixtures' bench-scale Data.fs (502 transactions, 22,350
// records) so that a kill lands while transactions commit out of order; SIGINT stops gracefully (exit
// 130, watermark recorded) and is resumed the same way.
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { TestDatabase } from "../support/Postgres.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { digest, filestorageSection, fixtures, freshDb, whenCommitted, writeConfig, zodbConvert } from "../support/Zodb.ts"

const dataFs = `${fixtures}/bench-scale/Data.fs`

describe("zodb-convert: killed at any instant, resumed with --incremental", () => {
  layer(TestDatabase.layer, { timeout: 600_000 })((it) => {
    it.effect("SIGKILL at random instants, then --incremental: the destination equals a clean run's (every table)", () =>
      Effect.scoped(Effect.gen(function*() {
        const dir = yield* scopedTempDir("zodb-resume-")
        const clean = yield* TestDatabase
        const cleanRun = yield* zodbConvert([writeConfig(dir, { source: filestorageSection(dataFs), db: clean }), "-w", "4"])
        assert.strictEqual(cleanRun.code, 0, cleanRun.stderr)
        const expected = yield* digest(clean)
        assert.strictEqual(expected.transaction_log.split(":")[0], "502")

        yield* Effect.promise(() =>
          fc.assert(
            // the kill lands once `after` transactions are committed, plus a random delay of up to 50 ms
            fc.asyncProperty(fc.integer({ min: 0, max: 480 }), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 4 }), (after, delayMs, workers) =>
              Effect.runPromise(Effect.scoped(Effect.gen(function*() {
                const db = yield* freshDb
                const runDir = yield* scopedTempDir("zodb-resume-run-")
                const config = writeConfig(runDir, { source: filestorageSection(dataFs), db })
                let cancel = () => {}
                const killed = yield* zodbConvert([config, "-w", String(workers)], {
                  onStart: (child) => {
                    cancel = whenCommitted(db, after, () => setTimeout(() => child.kill("SIGKILL"), delayMs).unref())
                  }
                })
                cancel()
                // it may have finished before the kill: then it must have exited 0
                if (killed.signal === null) assert.strictEqual(killed.code, 0, killed.stderr)
                const resumed = yield* zodbConvert([config, "--incremental", "-w", String(workers)])
                assert.strictEqual(resumed.code, 0, resumed.stderr)
                assert.deepStrictEqual(yield* digest(db), expected, `killed after ${after} transactions + ${delayMs} ms with -w ${workers}`)
              })))),
            { numRuns: 8, endOnFailure: true }
          )
        )
      })))

    it.effect("SIGINT: what was read is committed, the watermark recorded, exit 130; --incremental completes it", () =>
      Effect.scoped(Effect.gen(function*() {
        const clean = yield* freshDb
        const dir = yield* scopedTempDir("zodb-sigint-")
        const expectedRun = yield* zodbConvert([writeConfig(dir, { source: filestorageSection(dataFs), db: clean }), "-w", "2"])
        assert.strictEqual(expectedRun.code, 0, expectedRun.stderr)
        const expected = yield* digest(clean)

        const db = yield* freshDb
        const runDir = yield* scopedTempDir("zodb-sigint-run-")
        const config = writeConfig(runDir, { source: filestorageSection(dataFs), db })
        let cancel = () => {}
        const stopped = yield* zodbConvert([config, "-w", "2", "--progress", "plain"], {
          onStart: (child) => {
            cancel = whenCommitted(db, 100, () => child.kill("SIGINT"))
          }
        })
        cancel()
        assert.strictEqual(stopped.code, 130, stopped.stderr)
        assert.match(stopped.stderr, /--incremental/)
        const partial = yield* digest(db)
        assert.notDeepEqual(partial, expected)
        // stopped mid-copy: at least the 100 transactions seen, not all of them
        const committed = Number(partial.transaction_log!.split(":")[0])
        assert.isTrue(committed >= 100 && committed < 502, String(committed))
        const resumed = yield* zodbConvert([config, "--incremental"])
        assert.strictEqual(resumed.code, 0, resumed.stderr)
        assert.deepStrictEqual(yield* digest(db), expected)
      })))
  })
})
