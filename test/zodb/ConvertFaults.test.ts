// zodb-convert with faults in front of the real servers: the destination's connections reset again and
// again mid-copy (a TCP proxy in front of PostgreSQL), and an S3 that answers blob uploads with 200
// while storing nothing (a proxy in front of s3rver). Commits are retried and the copy equals a clean
// one; an upload never proven is never recorded: no blob_state row names an object S3 does not have.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import { FaultProxy } from "../support/FaultProxy.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { TestS3 } from "../support/S3.ts"
import * as TcpProxy from "../support/TcpProxy.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { digest, filestorageSection, fixtures, freshDb, keywordDsn, relstorageSection, restoreDump, whenCommitted, writeConfig, zodbConvert } from "../support/Zodb.ts"

const fresh = <A, E>(effect: Effect.Effect<A, E, TestDatabase | SqlClient.SqlClient | Scope.Scope>) =>
  Effect.scoped(Effect.provide(effect, TestDatabase.layerClient))

describe("zodb-convert: faults in front of the real servers", () => {
  it.effect("the first contact's connection reset twice by the network: tried again, and the copy completes", () =>
    fresh(Effect.gen(function*() {
      const db = yield* TestDatabase
      const dir = yield* scopedTempDir("zodb-first-reset-")
      const proxy = yield* TcpProxy.make({ host: db.host, port: db.port })
      yield* proxy.onStatement({ pattern: /^SELECT 1$/, action: "reset", count: 2 })
      const config = writeConfig(dir, { source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`), db, viaPort: proxy.port })
      const result = yield* zodbConvert([config])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(yield* proxy.acted, 2)
    })), { timeout: 120_000 })

  it.effect("the destination's connections reset four times mid-copy: retried, and the result equals a clean copy", () =>
    fresh(Effect.gen(function*() {
      const db = yield* TestDatabase
      const dir = yield* scopedTempDir("zodb-reset-")
      const dataFs = `${fixtures}/bench-scale/Data.fs`
      const clean = yield* freshDb
      const cleanRun = yield* zodbConvert([writeConfig(yield* scopedTempDir("zodb-reset-clean-"), { source: filestorageSection(dataFs), db: clean })])
      assert.strictEqual(cleanRun.code, 0, cleanRun.stderr)

      const proxy = yield* TcpProxy.make({ host: db.host, port: db.port })
      const config = writeConfig(dir, { source: filestorageSection(dataFs), db, viaPort: proxy.port })
      const resets = { done: 0 }
      // the resets start once the copy commits (the first contact's own resets are the test above)
      let cancel = () => {}
      const result = yield* zodbConvert([config, "-w", "3"], {
        onStart: () => {
          cancel = whenCommitted(db, 1, () => {
            const timer = setInterval(() => {
              if (resets.done >= 4) return clearInterval(timer)
              resets.done++
              Effect.runFork(proxy.reset)
            }, 150)
          })
        }
      })
      cancel()
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isAtLeast(resets.done, 2)
      assert.deepStrictEqual(yield* digest(db), yield* digest(clean))
    })), { timeout: 180_000 })

  it.effect("S3 answers blob uploads with 200 and stores nothing: exit 1 naming the upload, nothing recorded without its object; a rerun completes", () =>
    Effect.scoped(Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      yield* proxy.setRules([{ name: "lie", method: "PUT", path: /\/blobs\//, fault: { kind: "answer", status: 200, body: "" } }])
      const dir = yield* scopedTempDir("zodb-s3lie-")
      const config = writeConfig(dir, {
        source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`),
        db,
        s3,
        s3Endpoint: proxy.endpoint,
        prefix: "p"
      })
      const result = yield* zodbConvert([config, "--retries", "2"])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /blobs\/[0-9a-f]{16}\/[0-9a-f]{16}\.blob/)
      assert.isAtLeast(yield* proxy.fired("lie"), 1)
      // every s3_key recorded has its object
      const recorded = yield* sql<{ s3_key: string }>`SELECT s3_key FROM blob_state WHERE s3_key IS NOT NULL`
      for (const r of recorded) {
        const object = yield* s3.getObject(`p/${r.s3_key}`)
        assert.isTrue(object._tag === "Some", r.s3_key)
      }

      yield* proxy.setRules([])
      const rerun = yield* zodbConvert([config, "--incremental"])
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      const all = yield* sql<{ s3_key: string }>`SELECT s3_key FROM blob_state WHERE s3_key IS NOT NULL`
      // the two blobs of 100 KB or more (102,400 B and 3 MiB + 17 B)
      assert.strictEqual(all.length, 2)
      for (const r of all) assert.isTrue((yield* s3.getObject(`p/${r.s3_key}`))._tag === "Some", r.s3_key)
    }).pipe(Effect.provide(Layer.mergeAll(TestDatabase.layerClient, FaultProxy.layer.pipe(Layer.provideMerge(TestS3.layer)))))), { timeout: 180_000 })

  it.effect("the RelStorage source's connections reset mid-copy (history-preserving, blobs): retried, the result equals a clean copy", () =>
    fresh(Effect.gen(function*() {
      const db = yield* TestDatabase
      const source = yield* freshDb
      yield* restoreDump(source, `${fixtures}/relstorage/relstorage-hp.sql`)
      const clean = yield* freshDb
      const cleanRun = yield* zodbConvert([writeConfig(yield* scopedTempDir("zodb-rsreset-clean-"), {
        source: relstorageSection(keywordDsn(source), true), db: clean, historyPreserving: true
      })])
      assert.strictEqual(cleanRun.code, 0, cleanRun.stderr)
      const proxy = yield* TcpProxy.make({ host: source.host, port: source.port })
      const config = writeConfig(yield* scopedTempDir("zodb-rsreset-"), {
        source: relstorageSection(keywordDsn({ ...source, host: "127.0.0.1", port: proxy.port }), true),
        db,
        historyPreserving: true
      })
      const resets = { done: 0 }
      // the resets start once the copy commits, as the test's name says (a reset during the first
      // contact with the source is a setup failure, exit 2)
      let cancel = () => {}
      const result = yield* zodbConvert([config, "-w", "2"], {
        onStart: () => {
          cancel = whenCommitted(db, 1, () => {
            const timer = setInterval(() => {
              if (resets.done >= 6) return clearInterval(timer)
              resets.done++
              Effect.runFork(proxy.reset)
            }, 120)
          })
        }
      })
      cancel()
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isAtLeast(resets.done, 1, "a reset landed during the copy")
      assert.isAtLeast(yield* proxy.accepted, 2, "the source was reconnected after a reset")
      assert.deepStrictEqual(yield* digest(db), yield* digest(clean))
    })), { timeout: 180_000 })
})
