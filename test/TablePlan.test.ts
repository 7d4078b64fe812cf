// `lo-migrate plan` and `migrate --dry-run` with `--profile table`, through the executable: counts,
// exact bytes (from --size-column, or read from the large objects), histogram, problems, estimate;
// nothing written (no column added, bucket untouched).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const table = ["--profile", "table", "--table", "public.files", "--oid-column", "content", "--key-column", "name"]

/** a: 0 B, b: 12 B, c: 2000 B, s1 and s2 share one 5 B object, n: NULL oid, x: dangling, k: NULL key */
const fixture = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE files (name text UNIQUE, content oid, size bigint)`
  const object = (text: string) =>
    sql<{ readonly oid: number }>`SELECT lo_from_bytea(0, convert_to(${text}, 'UTF8')) AS oid`.pipe(Effect.map((r) => Number(r[0]!.oid)))
  const shared = yield* object("hello")
  const dangling = yield* object("0123456789")
  yield* sql`INSERT INTO files VALUES
    ('a', ${yield* object("")}, 0), ('b', ${yield* object("twelve bytes")}, 12), ('c', ${yield* object("x".repeat(2000))}, 2000),
    ('s1', ${shared}, 5), ('s2', ${shared}, 5), ('n', NULL, NULL), ('x', ${dangling}, 10), (NULL, ${yield* object("abc")}, 3)`
  yield* sql`SELECT lo_unlink(${dangling})`
  return { shared, dangling }
})

const columnCount = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [r] = yield* sql<{ readonly n: bigint }>`
    SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'files'`
  return Number(r!.n)
})

describe("lo-migrate plan --profile table", () => {
  it.live("counts, sizes read from the objects or --size-column, problems and an estimate; writes nothing", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const s3 = yield* TestS3
      const t = yield* target

      const read = yield* runCli(["plan", ...t, ...table, "--sample", "5"])
      assert.strictEqual(read.code, 0, read.stderr)
      const out = read.stdout
      assert.include(out, "plan for public.files")
      assert.match(out, /to migrate: +7  2022 bytes \(/)
      assert.match(out, /already migrated: +0  0 bytes/)
      assert.match(out, /\n  0 B +1  0 bytes/)
      assert.match(out, /\n  <= 1\.00 KiB +3  22 bytes/)
      assert.match(out, /\n  <= 16\.00 KiB +1  2000 bytes/)
      // the NULL oid and the dangling one have no length to read
      assert.match(out, /\n  size NULL +2/)
      assert.include(out, "NULL data:      1 (e.g. n)")
      assert.include(out, `dangling oids:  1 (e.g. x -> oid ${f.dangling})`)
      assert.match(out, /malformed keys: 1 \(e\.g\. "NULL \(oid \d+\)"\)/)
      assert.include(out, `oids shared by several rows (whole table): 1 oid(s) in 2 row(s) (e.g. oid ${f.shared}: s1 s2)`)
      assert.include(out, `column "sha256" does not exist yet`)
      assert.include(out, "sizes read from the large objects themselves (lo_lseek64)")
      assert.match(out, /based on: \d+ sampled object\(s\)/)
      assert.include(out, "reachable and readable")

      // --size-column: the column's values (the dangling row's 10 bytes count, the NULL oid's NULL does not)
      const sized = yield* runCli(["migrate", ...t, ...table, "--size-column", "size", "--dry-run"])
      assert.strictEqual(sized.code, 0, sized.stderr)
      assert.match(sized.stdout, /to migrate: +7  2032 bytes \(/)
      assert.match(sized.stdout, /\n  size NULL +1/)
      assert.notInclude(sized.stdout, "lo_lseek64")

      // nothing was written
      assert.strictEqual(yield* columnCount, 3)
      assert.deepStrictEqual(yield* s3.listKeys(), [])

      // after a run, the migrated rows count as such
      const run = yield* runCli(["migrate", ...t, ...table, "--size-column", "size"])
      assert.strictEqual(run.code, 1, run.stderr)
      const after = yield* runCli(["plan", ...t, ...table])
      assert.strictEqual(after.code, 0, after.stderr)
      assert.match(after.stdout, /to migrate: +2  0 bytes/)
      assert.match(after.stdout, /already migrated: +5  2022 bytes/)
      assert.match(after.stdout, /total: +7  2022 bytes/)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
