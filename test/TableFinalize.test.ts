// `migrate --finalize --profile table` through the executable: after a clean run the result column is
// made NOT NULL (no unique index: rows may share a content); refused, naming the rows, while NULLs remain.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const column = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [r] = yield* sql<{ readonly notnull: boolean; readonly indexes: bigint }>`
    SELECT a.attnotnull AS notnull,
      (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND a.attnum = ANY(i.indkey)) AS indexes
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'docs'::regclass AND a.attname = 'digest'`
  return { notNull: r!.notnull, indexes: Number(r!.indexes) }
})

describe("lo-migrate migrate --finalize --profile table", () => {
  it.live("NOT NULL after a clean run, refused while a row has no result; equal contents are allowed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE docs (id text UNIQUE, content oid)`
      // d1 and d2 hold the same bytes: legitimate in a generic table
      yield* sql`INSERT INTO docs SELECT 'd' || i, lo_from_bytea(0, convert_to('doc ' || (i % 4), 'UTF8'))
        FROM generate_series(1, 5) AS i`
      yield* sql`INSERT INTO docs VALUES (NULL, lo_from_bytea(0, convert_to('orphan', 'UTF8')))`
      const args = ["migrate", ...(yield* target), "--profile", "table", "--table", "docs", "--oid-column", "content",
        "--key-column", "id", "--sha256-column", "digest", "--finalize"]

      // the row with a NULL key is never migrated: finalize names it and changes nothing
      const refused = yield* runCli(args)
      assert.strictEqual(refused.code, 2, refused.stderr)
      const [marked] = yield* sql<{ readonly n: bigint }>`SELECT count(digest) AS n FROM docs`
      assert.strictEqual(Number(marked!.n), 5)
      assert.match(refused.stderr, /table docs: 1 row\(s\) still have no "digest" \(e\.g\. NULL \(oid \d+\)\): cannot add NOT NULL/)
      assert.deepStrictEqual(yield* column, { notNull: false, indexes: 0 })

      yield* sql`DELETE FROM docs WHERE id IS NULL`
      const done = yield* runCli(args)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, "Adding NOT NULL constraint ... done")
      assert.notInclude(done.stdout, "UNIQUE")
      assert.deepStrictEqual(yield* column, { notNull: true, indexes: 0 })
      const [dupes] = yield* sql<{ readonly n: bigint }>`
        SELECT count(*) AS n FROM (SELECT digest FROM docs GROUP BY digest HAVING count(*) > 1) s`
      assert.strictEqual(Number(dupes!.n), 1)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
