// The AfterCopy methods prune relies on, against the real PostgreSQL as the ordinary role: `release` sets
// data = NULL and unlinks in one transaction, leaves changed rows alone, and undoes everything when
// an unlink fails.
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Result } from "effect"
import { SqlClient } from "effect/sql"
import type { MigratedRow } from "../src/domain/MigratedObject.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import * as Nice2 from "../src/profiles/nice2/Nice2.ts"
import { AfterCopy } from "../src/phases/AfterCopy.ts"
import { addSha2Column, createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { pgTestServer, TestDatabase } from "./support/Postgres.ts"

const env = Nice2.layer(defaultPolicy(1)).pipe(
  Layer.provideMerge(TestDatabase.layerClient),
  Layer.provideMerge(Stats.layer)
)

const largeObjectExists = (oid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata WHERE oid = ${oid}`
    return Number(rows[0]!.n) === 1
  })

const migratedRow = (o: { hash: string; oid: number | null; size: number }, sha256: string): MigratedRow => ({
  key: o.hash,
  oid: o.oid,
  size: o.size,
  sha256
})

describe("Nice2 release (prune's transaction)", () => {
  it.live("releases matching rows, leaves changed rows alone", () =>
    Effect.gen(function*() {
      const source = yield* AfterCopy
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      yield* addSha2Column
      const a = yield* insertObject({ bytes: randomBytes(10, 1), sha2: "a".repeat(64) })
      const b = yield* insertObject({ bytes: randomBytes(20, 2), sha2: "b".repeat(64) })
      // b's sha2 changed after it was verified
      yield* sql`UPDATE _nice_binary SET sha2 = ${"c".repeat(64)} WHERE hash = ${b.hash}`
      const done = yield* source.release([migratedRow(a, "a".repeat(64)), migratedRow(b, "b".repeat(64))])
      assert.deepStrictEqual(done.released.map((r) => r.key), [a.hash])
      assert.deepStrictEqual(done.changed.map((r) => r.key), [b.hash])
      assert.deepStrictEqual(done.unlinked, [{ oid: a.oid!, bytes: 10 }])
      assert.isFalse(yield* largeObjectExists(a.oid!))
      assert.isTrue(yield* largeObjectExists(b.oid!))
      const rows = new Map((yield* readRows).map((r) => [r.hash, r.data]))
      assert.isNull(rows.get(a.hash))
      assert.strictEqual(rows.get(b.hash), b.oid)
    }).pipe(Effect.provide(env)))

  it.live("a failing unlink rolls the whole batch back: no row loses its large object", () =>
    Effect.gen(function*() {
      const server = pgTestServer()
      if (server.external) return // needs a second role to own a large object
      const source = yield* AfterCopy
      const db = yield* TestDatabase
      yield* createNice2Schema()
      yield* addSha2Column
      const mine = yield* insertObject({ bytes: randomBytes(10, 3), sha2: "d".repeat(64) })
      // a large object owned by the superuser: the ordinary role may not unlink it
      const adminUrl = new URL(server.adminUrl)
      adminUrl.pathname = `/${db.name}`
      const foreignOid = yield* Effect.gen(function*() {
        const admin = yield* SqlClient.SqlClient
        const [row] = yield* admin<{ oid: number }>`SELECT lo_from_bytea(0, ${randomBytes(5, 4)}) AS oid`
        return row!.oid
      }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(adminUrl.toString()), maxConnections: 1 })))
      const foreign = yield* insertObject({ bytes: randomBytes(5, 4), dataOid: foreignOid, sha2: "e".repeat(64) })

      const attempt = yield* Effect.result(
        source.release([migratedRow(mine, "d".repeat(64)), migratedRow(foreign, "e".repeat(64))])
      )
      assert.isTrue(Result.isFailure(attempt))
      if (Result.isFailure(attempt)) assert.include(attempt.failure.message, "must be owner of large object")
      const rows = new Map((yield* readRows).map((r) => [r.hash, r.data]))
      assert.strictEqual(rows.get(mine.hash), mine.oid, "the row still points at its large object")
      assert.isTrue(yield* largeObjectExists(mine.oid!))
      assert.strictEqual(rows.get(foreign.hash), foreignOid)
    }).pipe(Effect.provide(env)))
})
