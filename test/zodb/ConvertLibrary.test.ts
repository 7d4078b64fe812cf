// zodb-convert embedded in an Effect program (the library API, as the guide's Python API is used):
// a layer from source and destination, copy with workers from code, resume, and the same refusals.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { ZodbConversion } from "../../src/index.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { fixtures, keywordDsn } from "../support/Zodb.ts"

describe("zodb-convert as a library", () => {
  it.effect("ZodbConversion.layer: copy with workers, then a second copy is refused and an incremental one finds nothing to do", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const layer = ZodbConversion.layer({
        source: { kind: "filestorage", path: `${fixtures}/filestorage/Data.fs`, blobDir: `${fixtures}/filestorage/blobs` },
        destination: {
          kind: "pgjsonb",
          dsn: Redacted.make(keywordDsn(db)),
          historyPreserving: false,
          blobThreshold: 100 * 1024,
          s3: undefined,
          poolMaxSize: 10,
          poolTimeoutSeconds: 30,
          blobTempDir: undefined
        }
      })
      const progress: Array<number> = []
      const done = yield* Effect.gen(function*() {
        const conversion = yield* ZodbConversion
        return yield* conversion.copy({ workers: 2, onProgress: (p) => Effect.sync(() => progress.push(p.committed)) })
      }).pipe(Effect.provide(layer))
      assert.strictEqual(done.committed, 12)
      assert.strictEqual(done.blobs, 7)
      assert.isTrue(done.finalized)
      assert.strictEqual(progress[progress.length - 1], 12)
      const [n] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM transaction_log`
      assert.strictEqual(n!.n, "12")

      const copy = (options?: Parameters<ZodbConversion["Service"]["copy"]>[0]) =>
        Effect.gen(function*() {
          return yield* (yield* ZodbConversion).copy(options)
        }).pipe(Effect.provide(layer))
      const again = yield* Effect.exit(copy())
      assert.isTrue(Exit.isFailure(again))
      if (Exit.isFailure(again)) assert.match(String(again.cause), /DestinationNotEmpty|--incremental/)
      const incremental = yield* copy({ incremental: true })
      assert.strictEqual(incremental.committed, 0)
      // and verified from code: no difference
      const report = yield* Effect.gen(function*() {
        return yield* (yield* ZodbConversion).verify({ concurrency: 2 })
      }).pipe(Effect.provide(layer))
      assert.strictEqual(report.bad, 0, JSON.stringify(report.differences))
      assert.isAbove(report.checked, 300)
    }).pipe(Effect.provide(TestDatabase.layerClient), Effect.scoped), { timeout: 120_000 })
})
