// zodb-convert's blob modes, end to end against s3rver and a real PostgreSQL:
// - --background-blobs: the same destination as the inline mode; killed at any point and resumed, no
//   row ever names an object S3 does not have, and the result equals a clean copy; an upload that fails
//   for good fails the run naming the blob.
// - --deferred-blobs then --upload-blobs: no S3 during the copy and no blob_state row for a staged blob;
//   the upload records each after S3 holds it, deletes each staged file, skips what is done, waits for
//   transactions the copy has not committed, and ends with the same destination as the inline mode.
import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { FaultProxy } from "../support/FaultProxy.ts"
import { TestDatabase, type TestDatabaseShape } from "../support/Postgres.ts"
import { TestS3, type TestS3Shape } from "../support/S3.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { digest, filestorageSection, fixtures, freshDb, whenCommitted, writeConfig, zodbConvert } from "../support/Zodb.ts"

const source = filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`)
const prefix = "site1"

const env = Layer.mergeAll(TestDatabase.layerClient, FaultProxy.layer.pipe(Layer.provideMerge(TestS3.layer)))
const within = <A, E>(effect: Effect.Effect<A, E, TestDatabase | SqlClient.SqlClient | TestS3 | FaultProxy | Scope.Scope>) =>
  Effect.scoped(Effect.provide(effect, env))

/** Every blob_state row that names an S3 key has its object under the prefix: the mode's invariant. */
const everyKeyHasItsObject = (db: TestDatabaseShape, s3: TestS3Shape) =>
  Effect.gen(function*() {
    const rows = yield* Effect.scoped(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [present] = yield* sql.unsafe<{ t: string | null }>(`SELECT to_regclass('blob_state')::text AS t`)
      if (present?.t === null) return []
      return yield* sql.unsafe<{ s3_key: string }>(`SELECT s3_key FROM blob_state WHERE s3_key IS NOT NULL`)
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 1 }))))
    for (const r of rows) {
      assert.isTrue((yield* s3.getObject(`${prefix}/${r.s3_key}`))._tag === "Some", `blob_state names ${r.s3_key}, S3 has no object`)
    }
    return rows.length
  })

/** A clean inline-mode copy into a database of its own: what every mode must end with. */
const reference = (s3: TestS3Shape) =>
  Effect.gen(function*() {
    const clean = yield* freshDb
    const r = yield* zodbConvert([writeConfig(yield* scopedTempDir("zodb-modes-ref-"), { source, db: clean, s3, prefix: "reference" })])
    assert.strictEqual(r.code, 0, r.stderr)
    return yield* digest(clean)
  })

describe("zodb-convert: --background-blobs", () => {
  it.effect("gives the inline mode's destination; SIGKILL once n transactions are copied, then --incremental: equal, and no row ever names a missing object", () =>
    within(Effect.gen(function*() {
      const s3 = yield* TestS3
      const expected = yield* reference(s3)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 30 }), (after, delayMs) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const db = yield* freshDb
              const config = writeConfig(yield* scopedTempDir("zodb-bg-"), { source, db, s3, prefix })
              let cancel = () => {}
              const killed = yield* zodbConvert([config, "--background-blobs", "-w", "2"], {
                onStart: (child) => {
                  cancel = whenCommitted(db, after, () => setTimeout(() => child.kill("SIGKILL"), delayMs).unref())
                }
              })
              cancel()
              if (killed.signal === null) assert.strictEqual(killed.code, 0, killed.stderr)
              yield* everyKeyHasItsObject(db, s3)
              const resumed = yield* zodbConvert([config, "--background-blobs", "--incremental"])
              assert.strictEqual(resumed.code, 0, resumed.stderr)
              assert.strictEqual(yield* everyKeyHasItsObject(db, s3), 2)
              assert.deepStrictEqual(yield* digest(db), expected, `killed after ${after} transactions + ${delayMs} ms`)
            })))),
          { numRuns: 6, endOnFailure: true }
        )
      )
    })), { timeout: 300_000 })

  it.effect("an upload S3 refuses for good fails the run naming the blob; nothing names a missing object; a rerun completes", () =>
    within(Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      yield* proxy.setRules([{ name: "refuse", method: "PUT", path: /\/blobs\//, fault: { kind: "status", status: 500, code: "InternalError" } }])
      const config = writeConfig(yield* scopedTempDir("zodb-bg-refused-"), { source, db, s3, s3Endpoint: proxy.endpoint, prefix })
      const failed = yield* zodbConvert([config, "--background-blobs", "--retries", "2"])
      assert.strictEqual(failed.code, 1, failed.stderr)
      assert.match(failed.stderr, /blobs\/[0-9a-f]{16}\/[0-9a-f]{16}\.blob/)
      yield* everyKeyHasItsObject(db, s3)
      yield* proxy.setRules([])
      const rerun = yield* zodbConvert([config, "--background-blobs", "--incremental"])
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      assert.strictEqual(yield* everyKeyHasItsObject(db, s3), 2)
    })), { timeout: 180_000 })
})

describe("zodb-convert: --deferred-blobs, then --upload-blobs", () => {
  it.effect("no S3 during the copy, no row for a staged blob; the upload records each, deletes the staged files, skips what is done, and ends as the inline mode", () =>
    within(Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const expected = yield* reference(s3)
      const dir = yield* scopedTempDir("zodb-deferred-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const config = writeConfig(dir, { source, db, s3, prefix })

      // killed once 5 transactions are copied, then resumed: every blob staged exactly once
      let cancel = () => {}
      const killed = yield* zodbConvert([config, "--deferred-blobs", manifest], {
        onStart: (child) => {
          cancel = whenCommitted(db, 5, () => child.kill("SIGKILL"))
        }
      })
      cancel()
      if (killed.signal === null) assert.strictEqual(killed.code, 0, killed.stderr)
      const copied = yield* zodbConvert([config, "--deferred-blobs", manifest, "--incremental"])
      assert.strictEqual(copied.code, 0, copied.stderr)
      assert.deepStrictEqual(yield* s3.listKeys({ prefix: `${prefix}/` }), [])
      const [rows] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM blob_state WHERE s3_key IS NOT NULL`
      assert.strictEqual(rows!.n, 0)
      const lines = NodeFs.readFileSync(manifest, "utf8").trim().split("\n").slice(1)
      assert.strictEqual(lines.length, 2, lines.join("\n"))
      const staged = NodeFs.readdirSync(`${manifest}.staged`)
      assert.strictEqual(staged.length, 2)

      // the upload: S3 first, then the row, then the staged file goes; with --progress json, stdout holds
      // JSON lines only, the manifest's 2 lines are the total
      const upload = yield* zodbConvert([config, "--upload-blobs", manifest, "-w", "2", "--progress", "json"])
      assert.strictEqual(upload.code, 0, upload.stderr)
      const events = upload.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.deepInclude(events[0], { event: "started", task: "upload-blobs", unit: "lines", total: 2 })
      assert.deepInclude(events.at(-1), { event: "summary", outcome: "success", done: 2, total: 2, percent: 100, uploaded: 2, waiting: 0 })
      assert.match(upload.stderr, /2 uploaded .* 0 already done, 0 waiting for their transaction, 0 failed/)
      assert.deepStrictEqual(NodeFs.readdirSync(`${manifest}.staged`), [])
      assert.strictEqual(yield* everyKeyHasItsObject(db, s3), 2)
      const again = yield* zodbConvert([config, "--upload-blobs", manifest, "--progress", "plain"])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.match(again.stdout, /0 uploaded .* 2 already done/)
      assert.match(again.stderr, /upload-blobs: 2 of 2 lines \(100\.0%\), [\d.]+ MiB of [\d.]+ MiB, [\d.]+\/s, in 0h 00m 0\ds, 0 uploaded, 2 already done, 0 waiting for their transaction, 0 failed\n/)
      assert.deepStrictEqual(yield* digest(db), expected)
    })), { timeout: 180_000 })

  it.effect("killed at random points of the copy and of the upload, each rerun: the same destination as the inline mode, nothing staged at the end", () =>
    within(Effect.gen(function*() {
      const s3 = yield* TestS3
      const expected = yield* reference(s3)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 400 }), (after, uploadKillMs) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const db = yield* freshDb
              const dir = yield* scopedTempDir("zodb-deferred-prop-")
              const manifest = NodePath.join(dir, "blobs.tsv")
              const config = writeConfig(dir, { source, db, s3, prefix })
              let cancel = () => {}
              const killed = yield* zodbConvert([config, "--deferred-blobs", manifest], {
                onStart: (child) => {
                  cancel = whenCommitted(db, after, () => child.kill("SIGKILL"))
                }
              })
              cancel()
              if (killed.signal === null) assert.strictEqual(killed.code, 0, killed.stderr)
              const copied = yield* zodbConvert([config, "--deferred-blobs", manifest, "--incremental"])
              assert.strictEqual(copied.code, 0, copied.stderr)
              yield* everyKeyHasItsObject(db, s3)
              const cut = yield* zodbConvert([config, "--upload-blobs", manifest, "-w", "1"], {
                onStart: (child) => {
                  setTimeout(() => child.kill("SIGKILL"), uploadKillMs).unref()
                }
              })
              if (cut.signal === null) assert.strictEqual(cut.code, 0, cut.stderr)
              yield* everyKeyHasItsObject(db, s3)
              const done = yield* zodbConvert([config, "--upload-blobs", manifest])
              assert.strictEqual(done.code, 0, done.stderr)
              assert.deepStrictEqual(NodeFs.readdirSync(`${manifest}.staged`), [])
              assert.strictEqual(yield* everyKeyHasItsObject(db, s3), 2)
              assert.deepStrictEqual(yield* digest(db), expected, `copy killed after ${after}, upload after ${uploadKillMs} ms`)
            })))),
          { numRuns: 4, endOnFailure: true }
        )
      )
    })), { timeout: 300_000 })

  it.effect("a damaged staged file fails its line without uploading; a staged blob whose transaction is not committed waits (exit 1)", () =>
    within(Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const sql = yield* SqlClient.SqlClient
      const dir = yield* scopedTempDir("zodb-deferred-wait-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const config = writeConfig(dir, { source, db, s3, prefix })
      const copied = yield* zodbConvert([config, "--deferred-blobs", manifest])
      assert.strictEqual(copied.code, 0, copied.stderr)
      const lines = NodeFs.readFileSync(manifest, "utf8").trim().split("\n").slice(1)
      assert.strictEqual(lines.length, 2)
      // a damaged staged file fails its line and is not uploaded; the other line is
      const second = lines[1]!.split("\t")[0]!
      const bytes = NodeFs.readFileSync(second)
      bytes[0] = bytes[0]! ^ 0xff
      NodeFs.writeFileSync(second, bytes)
      const damaged = yield* zodbConvert([config, "--upload-blobs", manifest])
      assert.strictEqual(damaged.code, 1, damaged.stderr)
      assert.match(damaged.stdout, /1 uploaded .* 0 waiting for their transaction, 1 failed/, damaged.stdout)
      assert.match(damaged.stderr, /is not what was staged/)
      assert.strictEqual((yield* s3.listKeys({ prefix: `${prefix}/` })).length, 1)
      // both blobs belong to one transaction: with it gone (a copy that has not committed it yet), they wait
      const tidOf = (line: string) => line.split("\t")[2]!.split("/")[1]!
      const tid = String(BigInt.asIntN(64, BigInt(`0x${tidOf(lines[0]!)}`)))
      for (const table of ["blob_state", "object_state", "transaction_log"]) yield* sql.unsafe(`DELETE FROM ${table} WHERE tid = $1`, [tid])
      const waiting = yield* zodbConvert([config, "--upload-blobs", manifest])
      assert.strictEqual(waiting.code, 1, waiting.stderr)
      assert.match(waiting.stdout, /0 uploaded .* 0 already done, 2 waiting for their transaction, 0 failed/, waiting.stdout)
      assert.match(waiting.stderr, /finish the copy/)
    })), { timeout: 180_000 })
})
