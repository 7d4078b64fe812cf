// zodb-convert, RelStorage -> zodb-pgjsonb, end to end, both modes: the fixtures' dumps (made by
// RelStorage 4.2 itself, undo included) are restored with psql as an ordinary role, converted by the
// real executable, and the destination compared with what the real zodb-json-codec wrote for every
// object_state row: history-free into history-free, history-preserving into history-preserving.
import { assert, describe, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
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
  fixtures,
  jsonl,
  keywordDsn,
  relstorageSection,
  restoreDump,
  signed,
  writeConfig,
  zodbConvert
} from "../support/Zodb.ts"

for (const mode of ["hf", "hp"] as const) {
  const expected = jsonl<ExpectedRow>(`${fixtures}/expected/relstorage-${mode}.jsonl`)
  const blobs = jsonl<ExpectedBlob>(`${fixtures}/expected/relstorage-${mode}-blobs.jsonl`)
  const historyPreserving = mode === "hp"

  describe(`zodb-convert: RelStorage ${historyPreserving ? "history-preserving" : "history-free"} into zodb-pgjsonb`, () => {
    layer(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer), { timeout: 180_000 })((it) => {
      it.effect("the RelStorage 4.2 dump converts with every state as the codec wrote it and every blob byte-identical", () =>
        Effect.scoped(Effect.gen(function*() {
          const db = yield* TestDatabase
          const s3 = yield* TestS3
          const sql = yield* SqlClient.SqlClient
          const source = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
          yield* restoreDump(source, `${fixtures}/relstorage/relstorage-${mode}.sql`)
          const dir = yield* scopedTempDir("zodb-rs-")
          const config = writeConfig(dir, {
            source: relstorageSection(keywordDsn(source), historyPreserving),
            db,
            s3,
            historyPreserving
          })
          const result = yield* zodbConvert([config, "--codec-form", "codec", "-w", "3", "--progress", "plain"])
          assert.strictEqual(result.code, 0, result.stderr)

          // expected rows are in (tid, zoid) order: the last data revision of each oid is current
          const current = currentRows(expected)
          const [count] = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM object_state`
          assert.strictEqual(Number(count!.n), current.size)
          assert.deepStrictEqual(yield* compareStates("object_state", [...current.values()]), [])
          if (historyPreserving) {
            // every earlier revision with data is in object_history, as zodb-pgjsonb keeps it
            const currentKeys = new Set([...current.values()].map((r) => `${r.zoid}@${r.tid}`))
            const earlier = expected.filter((r) => r.class_mod !== null && !currentKeys.has(`${r.zoid}@${r.tid}`))
            assert.deepStrictEqual(yield* compareStates("object_history", earlier), [])
            const transactions = jsonl<ExpectedTransaction>(`${fixtures}/expected/relstorage-hp-transactions.jsonl`)
              .filter((t) => t.tid !== "0000000000000000")
            const log = yield* sql<{ tid: string; username: string; description: string; extension: Uint8Array }>`
              SELECT tid::text AS tid, username, description, extension FROM transaction_log ORDER BY tid`
            assert.deepStrictEqual(log.map((r) => BigInt(r.tid)), transactions.map((t) => signed(t.tid)))
            for (const [i, t] of transactions.entries()) {
              assert.strictEqual(log[i]!.username, t.user)
              assert.strictEqual(log[i]!.description, t.description)
              assert.strictEqual(Buffer.from(log[i]!.extension).toString("utf8"), t.extension_json ?? "")
            }
          }

          yield* assertBlobs(blobs, s3)
        })))
    })
  })
}
