// A row whose large object is replaced between the read and the commit (the application points it at
// another large object meanwhile) is never marked with the old content's result: the commit matches
// the oid that was read, so the row is reported as `row-changed` naming both oids and stays to migrate;
// otherwise prune, trusting the mark, would unlink the new large object. Deterministic: the change is
// made by the decorated object store just before the row's PUT, in-process (support/InProcess.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import {
  createLargeObject,
  createNice2Schema,
  type InsertedObject,
  insertObject,
  randomBytes,
  readRows,
  sha256Hex
} from "./support/Nice2Fixture.ts"
import { beforePutOf, migrateWithStore } from "./support/InProcess.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlob, insertBlobBytes } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

const largeObjectExists = (oid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM pg_catalog.pg_largeobject_metadata WHERE oid = ${oid}`
    return row!.n === 1
  })

describe("a row changed between its read and its commit is not marked", () => {
  it.live("nice2: data replaced meanwhile keeps sha2 NULL, is reported row-changed with both oids; prune leaves the new large object alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema({ withSha2Column: true })
      const rows: Array<InsertedObject> = []
      for (let i = 0; i < 4; i++) rows.push(yield* insertObject({ bytes: randomBytes(500 + i, 20 + i) }))
      const changed = rows[1]!
      let replacement = 0
      const summary = yield* migrateWithStore({ commitChunk: 10 }, yield* beforePutOf(changed.hash, Effect.gen(function*() {
        replacement = yield* createLargeObject(randomBytes(777, 99))
        yield* sql`UPDATE _nice_binary SET data = ${replacement} WHERE hash = ${changed.hash}`
      })))

      const after = new Map((yield* readRows).map((r) => [r.hash, r]))
      assert.isNull(after.get(changed.hash)!.sha2, "not marked with the old content's sha2")
      assert.strictEqual(after.get(changed.hash)!.data, replacement)
      for (const r of rows.filter((r) => r !== changed)) assert.strictEqual(after.get(r.hash)!.sha2, r.sha256)
      assert.strictEqual(summary.migrated, 3)
      assert.strictEqual(summary.failed, 1)
      const [failure] = summary.failures
      assert.strictEqual(failure!.key, changed.hash)
      assert.strictEqual(failure!.reason, "row-changed")
      assert.include(failure!.detail, `data is now oid ${replacement}, not ${changed.oid} as read`)

      // prune releases only migrated rows: the new large object stays
      const pruned = yield* runCli(["prune", ...(yield* target), "--yes"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.isTrue(yield* largeObjectExists(replacement), "the new large object survives prune")
      assert.strictEqual((yield* readRows).find((r) => r.hash === changed.hash)!.data, replacement)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("--profile table: the oid column replaced meanwhile is reported row-changed; the next run marks the new content", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE docs (id bigint PRIMARY KEY, content oid)`
      yield* sql`INSERT INTO docs SELECT i, lo_from_bytea(0, convert_to('doc ' || i, 'UTF8')) FROM generate_series(1, 4) AS i`
      const [old] = yield* sql<{ readonly content: number }>`SELECT content FROM docs WHERE id = 2`
      const fresh = new TextEncoder().encode("doc 2, second version")
      let replacement = 0
      const profile = { profile: "table", table: "docs", oidColumn: "content", keyColumns: ["id"] }
      const summary = yield* migrateWithStore({ ...profile, commitChunk: 10 }, yield* beforePutOf("2", Effect.gen(function*() {
        replacement = yield* createLargeObject(fresh)
        yield* sql`UPDATE docs SET content = ${replacement} WHERE id = 2`
      })))

      const marks = yield* sql<{ readonly id: string; readonly sha256: string | null }>`
        SELECT id::text AS id, sha256 FROM docs ORDER BY id`
      assert.isNull(marks[1]!.sha256, "not marked with the old content's SHA-256")
      assert.deepStrictEqual(marks.filter((m) => m.sha256 !== null).map((m) => m.id), ["1", "3", "4"])
      assert.strictEqual(summary.failed, 1)
      assert.strictEqual(summary.failures[0]!.reason, "row-changed")
      assert.include(summary.failures[0]!.detail, `"content" is now oid ${replacement}, not ${old!.content} as read`)

      const rerun = yield* migrateWithStore({ ...profile }, (store) => store)
      assert.strictEqual(rerun.migrated, 1)
      const [now] = yield* sql<{ readonly sha256: string }>`SELECT sha256 FROM docs WHERE id = 2`
      assert.strictEqual(now!.sha256, sha256Hex(fresh))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("relstorage: a blob whose chunk is replaced meanwhile gets no blob_state row and is reported row-changed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createBlobChunk("history-preserving")
      yield* insertBlobBytes(1, 10, [randomBytes(300, 1)])
      const blob = yield* insertBlob(2, 20, [randomBytes(300, 2), randomBytes(200, 3)])
      let replacement = 0
      const summary = yield* migrateWithStore({ profile: "relstorage", blobThreshold: 0 }, yield* beforePutOf("2/20", Effect.gen(function*() {
        replacement = yield* createLargeObject(randomBytes(300, 4))
        yield* sql`UPDATE blob_chunk SET chunk = ${replacement} WHERE zoid = 2 AND tid = 20 AND chunk_num = 0`
      })))

      const state = yield* sql<{ readonly key: string }>`SELECT zoid || '/' || tid AS key FROM blob_state ORDER BY zoid`
      assert.deepStrictEqual(state.map((s) => s.key), ["1/10"], "no blob_state row for the changed blob")
      assert.strictEqual(summary.failed, 1)
      assert.strictEqual(summary.failures[0]!.key, "2/20")
      assert.strictEqual(summary.failures[0]!.reason, "row-changed")
      assert.include(summary.failures[0]!.detail, `chunks are now oids ${replacement}, ${blob.oids[1]}, not ${blob.oids.join(", ")} as read`)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
