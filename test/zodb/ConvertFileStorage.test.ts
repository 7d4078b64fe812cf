// zodb-convert, FileStorage -> zodb-pgjsonb, end to end: the real executable reads the fixtures'
// Data.fs (made by real ZODB) and writes into a fresh database as an ordinary role, blobs at or above
// the threshold into s3rver. Every current object_state row must be jsonb-equal to what the real
// zodb-json-codec wrote for that record, refs a superset of its refs, every blob byte-identical (size,
// SHA-256), transaction_log as zodb-pgjsonb writes it.
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { TestDatabase } from "../support/Postgres.ts"
import { TestS3 } from "../support/S3.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import {
  assertBlobs,
  compareStates,
  currentRows,
  type ExpectedBlob,
  type ExpectedRow,
  type ExpectedTransaction,
  filestorageSection,
  fixtures,
  jsonl,
  signed,
  writeConfig,
  zodbConvert
} from "../support/Zodb.ts"

const dataFs = `${fixtures}/filestorage/Data.fs`
const blobDir = `${fixtures}/filestorage/blobs`
const expected = jsonl<ExpectedRow>(`${fixtures}/expected/filestorage.jsonl`)
const transactions = jsonl<ExpectedTransaction>(`${fixtures}/expected/filestorage-transactions.jsonl`)
const blobs = jsonl<ExpectedBlob>(`${fixtures}/expected/filestorage-blobs.jsonl`)

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("zodb-convert: FileStorage into zodb-pgjsonb", () => {
  layer(env, { timeout: 120_000 })((it) => {
    it.effect("the fixtures' Data.fs converts: every current state as the codec wrote it, blobs byte-identical, transaction_log as zodb-pgjsonb writes it", () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const s3 = yield* TestS3
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-fs-")
        const config = writeConfig(dir, { source: filestorageSection(dataFs, blobDir), db, s3, prefix: "zodb1" })
        const result = yield* zodbConvert([config, "--codec-form", "codec", "-w", "2", "--progress", "plain"])
        assert.strictEqual(result.code, 0, result.stderr)

        // object_state: the current revision of every live object, exactly the codec's JSON
        const current = currentRows(expected)
        const [count] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM object_state`
        assert.strictEqual(Number(count!.n), current.size)
        assert.deepStrictEqual(yield* compareStates("object_state", [...current.values()]), [])
        // the undone creation and the deleteObject leave no row
        for (const gone of ["000000000000012f", "0000000000000130"]) {
          const rows = yield* sql`SELECT 1 FROM object_state WHERE zoid = ${String(signed(gone))}`
          assert.strictEqual(rows.length, 0, gone)
        }

        // transaction_log: every transaction, user and description as text, the extension's bytes
        const log = yield* sql<{ tid: string; username: string; description: string; extension: Uint8Array }>`
          SELECT tid::text AS tid, username, description, extension FROM transaction_log ORDER BY tid`
        assert.strictEqual(log.length, transactions.length)
        for (const [i, t] of transactions.entries()) {
          const row = log[i]!
          assert.strictEqual(BigInt(row.tid), signed(t.tid))
          assert.strictEqual(row.username, t.user)
          assert.strictEqual(row.description, t.description)
          assert.strictEqual(Buffer.from(row.extension).toString("utf8"), t.extension_json ?? "", t.description)
        }

        // blob_state: every revision; >= 100 KB in S3 under the prefix, s3_key without it
        yield* assertBlobs(blobs, s3, "zodb1")
        // finalized: zoid_seq past every oid, the watermark table gone
        const [seq] = yield* sql<{ next: string }>`SELECT last_value::text AS next FROM zoid_seq`
        const [max] = yield* sql<{ m: string }>`SELECT max(zoid)::text AS m FROM object_state`
        assert.isTrue(BigInt(seq!.next) >= BigInt(max!.m), `${seq!.next} < ${max!.m}`)
        const wm = yield* sql`SELECT to_regclass('zodb_convert_watermark') AS t`
        assert.isNull((wm[0] as { t: unknown }).t)

        // a second plain run is refused (exit 2); --incremental finds nothing to do
        const again = yield* zodbConvert([config])
        assert.strictEqual(again.code, 2, again.stderr)
        assert.match(again.stderr, /already holds a copy \(last transaction [0-9a-fx]+\)\n  help: add --incremental to copy what is new since/)
        const incremental = yield* zodbConvert([config, "--incremental", "--codec-form", "codec"])
        assert.strictEqual(incremental.code, 0, incremental.stderr)
      }))
  })
})
