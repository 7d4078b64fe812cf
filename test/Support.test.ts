// Proves the test support works: the throwaway PostgreSQL (ordinary role, fresh database, large objects,
// Nice2 fixture) and s3rver (round trip, listing across pages).
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import {
  createNice2Schema, insertObject, randomBytes, readLargeObject, readRows, sha1Hex, sha256Hex
} from "./support/Nice2Fixture.js"
import { pgTestServer, TestDatabase } from "./support/Postgres.js"
import { TestS3 } from "./support/S3.js"

const MiB = 1024 * 1024

layer(TestDatabase.layerClient)("TestDatabase", (it) => {
  it.effect("connects as an ordinary role on its own fresh database", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const db = yield* TestDatabase
      const [me] = yield* sql<{ user: string; db: string; rolsuper: boolean; rolcreatedb: boolean }>`
        SELECT current_user AS user, current_database() AS db, rolsuper, rolcreatedb
        FROM pg_roles WHERE rolname = current_user`
      assert.strictEqual(me!.db, db.name)
      assert.strictEqual(me!.user, db.role)
      assert.isFalse(me!.rolsuper)
      assert.isTrue(db.url.startsWith("postgres://"))
      const [owner] = yield* sql<{ owner: string }>`
        SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()`
      assert.strictEqual(owner!.owner, db.role)
    }))

  it.effect.skipIf(pgTestServer().external)("the throwaway cluster runs with the test settings", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const settings = yield* sql<{ name: string; setting: string }>`
        SELECT name, setting FROM pg_settings
        WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'max_connections', 'listen_addresses')
        ORDER BY name`
      assert.deepStrictEqual(Object.fromEntries(settings.map((s) => [s.name, s.setting])), {
        fsync: "off",
        full_page_writes: "off",
        listen_addresses: "127.0.0.1",
        max_connections: "200",
        synchronous_commit: "off"
      })
    }))

  it.effect("creates a large object and reads it back with lo_get", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const bytes = randomBytes(10_000, 1)
      const [created] = yield* sql<{ oid: number }>`SELECT lo_from_bytea(0, ${bytes}) AS oid`
      const [got] = yield* sql<{ data: Uint8Array }>`SELECT lo_get(${created!.oid}) AS data`
      assert.deepStrictEqual(got!.data, bytes)
    }))

  it.effect("Nice2 fixture: rows keyed by SHA-1, NULL data, overrides, pre-migrated sha2", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const sql = yield* SqlClient.SqlClient
      const [job] = yield* sql<{ active: boolean }>`
        SELECT active FROM nice_batch_job WHERE id = 'nice2.dms.DeleteUnreferencedBinariesBatchJob'`
      assert.isFalse(job!.active)

      const a = yield* insertObject({ bytes: new TextEncoder().encode("hello"), mime: "text/plain" })
      assert.strictEqual(a.hash, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
      assert.strictEqual(a.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
      const empty = yield* insertObject({ bytes: new Uint8Array(0) })
      const nul = yield* insertObject({ bytes: null })
      const lying = yield* insertObject({ bytes: randomBytes(100, 2), size: 99 })

      let rows = yield* readRows // before the tool adds sha2
      assert.strictEqual(rows.length, 4)
      assert.deepStrictEqual(rows.map((r) => r.hash), [a.hash, empty.hash, nul.hash, lying.hash].sort())
      const byHash = new Map(rows.map((r) => [r.hash, r]))
      assert.deepStrictEqual(byHash.get(a.hash), { hash: a.hash, size: 5, mime_type: "text/plain", data: a.oid, sha2: null })
      assert.strictEqual(byHash.get(empty.hash)!.size, 0)
      assert.isNull(byHash.get(nul.hash)!.data)
      assert.strictEqual(byHash.get(lying.hash)!.size, 99)
      assert.deepStrictEqual(yield* readLargeObject(lying.oid!), lying.bytes)

      const done = yield* insertObject({ bytes: randomBytes(10, 3), sha2: sha256Hex(randomBytes(10, 3)) })
      rows = yield* readRows
      assert.strictEqual(rows.find((r) => r.hash === done.hash)!.sha2, done.sha256)
      assert.isNull(rows.find((r) => r.hash === a.hash)!.sha2)
    }))

  it.effect("large objects above the single-statement limit are written in chunks", () =>
    Effect.gen(function*() {
      const bytes = randomBytes(20 * MiB + 123, 42)
      assert.deepStrictEqual(randomBytes(20 * MiB + 123, 42), bytes, "deterministic")
      const obj = yield* insertObject({ bytes, hash: sha1Hex(bytes) })
      const back = yield* readLargeObject(obj.oid!)
      assert.strictEqual(back.length, bytes.length)
      assert.strictEqual(sha256Hex(back), obj.sha256)
    }))
})

layer(TestDatabase.layer)("TestDatabase without client", (it) => {
  // Effect 4 memoizes layers by reference for the whole `layer(...)` block: providing the same layer value
  // again inside a test reuses the block's database; `Layer.fresh` builds (and later drops) another one.
  it.effect("the same layer value is shared, Layer.fresh gives another database", () =>
    Effect.gen(function*() {
      const a = yield* TestDatabase
      const same = yield* Effect.provide(Effect.service(TestDatabase), TestDatabase.layer)
      assert.strictEqual(same.name, a.name)
      const other = yield* Effect.provide(Effect.service(TestDatabase), Layer.fresh(TestDatabase.layer))
      assert.notStrictEqual(other.name, a.name)
      // layerClient reuses the block's database too (it is built on the same TestDatabase.layer value).
      const [row] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ db: string; present: boolean }>`
          SELECT current_database() AS db,
                 EXISTS (SELECT 1 FROM pg_database WHERE datname = ${other.name}) AS present`
      }).pipe(Effect.provide(TestDatabase.layerClient))
      assert.strictEqual(row!.db, a.name)
      assert.isFalse(row!.present, "the fresh database is dropped when its provide ends")
    }))
})

layer(TestS3.layer)("TestS3", (it) => {
  it.effect("put and get back byte-identical, with content type and metadata", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const bytes = randomBytes(3 * MiB + 7, 7)
      yield* s3.putObject("a/b.bin", bytes, { contentType: "application/pdf", metadata: { sha1: sha1Hex(bytes) } })
      const got = Option.getOrThrow(yield* s3.getObject("a/b.bin"))
      assert.strictEqual(got.bytes.length, bytes.length)
      assert.strictEqual(sha256Hex(got.bytes), sha256Hex(bytes))
      assert.strictEqual(got.contentType, "application/pdf")
      assert.deepStrictEqual(got.metadata, { sha1: sha1Hex(bytes) })
      assert.isTrue(Option.isNone(yield* s3.getObject("missing")))
    }))

  it.effect("listKeys pages past 1000 keys", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const keys = Array.from({ length: 1105 }, (_, i) => `many/${String(i).padStart(5, "0")}`)
      yield* Effect.forEach(keys, (k) => s3.putObject(k, "x"), { concurrency: 16, discard: true })
      assert.deepStrictEqual(yield* s3.listKeys({ prefix: "many/" }), keys)
      const all = yield* s3.listKeys()
      assert.isTrue(all.includes("a/b.bin"))
      assert.strictEqual(all.length, keys.length + 1)
    }))

  it.effect("createBucket makes an independent bucket", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* s3.createBucket("second-bucket")
      yield* s3.putObject("k", "v", { bucket: "second-bucket" })
      assert.deepStrictEqual(yield* s3.listKeys({ bucket: "second-bucket" }), ["k"])
      const got = Option.getOrThrow(yield* s3.getObject("k", "second-bucket"))
      assert.strictEqual(new TextDecoder().decode(got.bytes), "v")
    }))
})
