// `--profile table` end to end through the executable: any table with an oid column, awkward
// identifiers (schema-qualified, mixed case, spaces, quotes, a dot), a composite key paged across
// several pages, the S3 key from --key-template, verify, and the commands the profile refuses.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { runCli } from "./support/Cli.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

// schema `Odd Schema`, table `My "Files"`, key (`Tenant Id` int, `file.name` text), oid `Blob Oid`,
// mime `Mime Type`; the flags name them as a user would, the dotted column in double quotes
const profileArgs = [
  "--profile", "table",
  "--table", "Odd Schema.My \"Files\"",
  "--oid-column", "Blob Oid",
  "--key-column", "Tenant Id",
  "--key-column", "\"file.name\"",
  "--mime-column", "Mime Type",
  "--sha256-column", "Sha \"256\"",
  "--key-template", "files/{key}/{sha256}"
]

/** `rows` rows over 3 tenants: content `content <i>`, names `doc-<i>`, a large object each. */
const createOddTable = (rows: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`CREATE SCHEMA "Odd Schema"`)
    yield* sql.unsafe(`CREATE TABLE "Odd Schema"."My ""Files""" (
      "Tenant Id" integer NOT NULL,
      "file.name" text NOT NULL,
      "Blob Oid" oid,
      "Mime Type" text,
      PRIMARY KEY ("Tenant Id", "file.name"))`)
    yield* sql.unsafe(`INSERT INTO "Odd Schema"."My ""Files""" ("Tenant Id", "file.name", "Blob Oid", "Mime Type")
      SELECT i % 3, 'doc-' || i, lo_from_bytea(0, convert_to('content ' || i, 'UTF8')),
        CASE WHEN i % 2 = 0 THEN 'text/plain' END
      FROM generate_series(1, $1::int) AS i`, [rows])
  })

const readOdd = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.unsafe<{ readonly tenant: number; readonly name: string; readonly sha: string | null }>(
    `SELECT "Tenant Id" AS tenant, "file.name" AS name, "Sha ""256"""::text AS sha FROM "Odd Schema"."My ""Files"""`
  )
})

describe("lo-migrate --profile table", () => {
  it.live("migrates a table with awkward names and a composite key over several pages, then verifies it", () =>
    Effect.gen(function*() {
      const n = 1100 // more than one observer page (1024)
      yield* createOddTable(n)
      const s3 = yield* TestS3
      const first = yield* runCli(["migrate", ...(yield* target), ...profileArgs, "--interval", "1"])
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, `migrated ${n} object(s)`)
      assert.include(first.stderr, `added column "Sha ""256""" character(64)`)

      const rows = yield* readOdd
      assert.strictEqual(rows.length, n)
      for (const r of rows) {
        const i = Number(r.name.slice(4))
        assert.strictEqual(r.sha, sha256(`content ${i}`), r.name)
      }
      const keys = yield* s3.listKeys()
      assert.strictEqual(keys.length, n)
      const sample = Option.getOrThrow(yield* s3.getObject(`files/2/doc-2/${sha256("content 2")}`))
      assert.strictEqual(Buffer.from(sample.bytes).toString(), "content 2")
      assert.strictEqual(sample.contentType, "text/plain")
      assert.strictEqual(sample.metadata.sha256, sha256("content 2"))
      const untyped = Option.getOrThrow(yield* s3.getObject(`files/1/doc-7/${sha256("content 7")}`))
      assert.strictEqual(untyped.contentType, "application/octet-stream")

      const again = yield* runCli(["migrate", ...(yield* target), ...profileArgs])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, `migrated 0 object(s)`)
      assert.include(again.stdout, `${n} of ${n} were already migrated`)

      const verified = yield* runCli(["verify", ...(yield* target), ...profileArgs, "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, `verified ${n} migrated object(s)`)
      assert.include(verified.stdout, `${n} good, 0 bad`)

      // a changed object is found, under its templated key
      yield* s3.putObject(`files/0/doc-3/${sha256("content 3")}`, "something else", { metadata: { sha256: sha256("content 3") } })
      const bad = yield* runCli(["verify", ...(yield* target), ...profileArgs])
      assert.strictEqual(bad.code, 1, bad.stderr)
      assert.include(bad.stdout, `BAD ["0","doc-3"]`)
      assert.include(bad.stdout, "size-mismatch")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("a plain table: --size-column, {oid} in the key template; a NULL oid is a failed row, the rest is marked, then pruned", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE attachments (id bigint PRIMARY KEY, content oid, size bigint)`
      yield* sql`INSERT INTO attachments SELECT i, lo_from_bytea(0, convert_to('attachment ' || i, 'UTF8')),
        length('attachment ' || i) FROM generate_series(1, 20) AS i`
      yield* sql`INSERT INTO attachments VALUES (21, NULL, 0)`
      const args = [
        "migrate", ...(yield* target), "--profile", "table", "--table", "public.attachments", "--oid-column", "content",
        "--key-column", "id", "--size-column", "size", "--key-template", "att/{oid}-{sha256}"
      ]
      const result = yield* runCli(args)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.include(result.stdout, "migrated 20 object(s)")
      assert.match(result.stderr, /FAILED 21: null-data/)
      const rows = yield* sql<{ readonly id: string; readonly content: number; readonly sha256: string | null }>`
        SELECT t.id::text AS id, t.content, t.sha256 FROM attachments t ORDER BY t.id`
      const s3 = yield* TestS3
      for (const r of rows.slice(0, 20)) {
        assert.strictEqual(r.sha256, sha256(`attachment ${r.id}`))
        assert.isTrue(Option.isSome(yield* s3.getObject(`att/${r.content}-${r.sha256}`)), r.id)
      }
      assert.isNull(rows[20]!.sha256)

      // prune: verified rows lose their large object, the rest is left alone
      const pruneArgs = ["prune", ...(yield* target), "--profile", "table", "--table", "public.attachments", "--oid-column", "content",
        "--key-column", "id", "--size-column", "size", "--key-template", "att/{oid}-{sha256}"]
      const dry = yield* runCli(pruneArgs)
      assert.strictEqual(dry.code, 0, dry.stderr)
      assert.include(dry.stdout, "would unlink 20 large object(s)")
      const pruned = yield* runCli([...pruneArgs, "--yes"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.include(pruned.stdout, "pruned: checked 20 migrated row(s)")
      assert.include(pruned.stdout, "unlinked 20 large object(s)")
      const oids = rows.slice(0, 20).map((r) => r.content)
      const [left] = yield* sql<{ readonly n: bigint }>`
        SELECT count(*) AS n FROM pg_catalog.pg_largeobject_metadata WHERE oid = ANY(${oids}::oid[])`
      assert.strictEqual(Number(left!.n), 0)
      const [nulled] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM attachments WHERE content IS NULL`
      assert.strictEqual(Number(nulled!.n), 21)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("refuses what it cannot do, and bad settings, with exit 2 before any work", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE attachments (id bigint PRIMARY KEY, content oid)`
      const t = yield* target
      const table = ["--profile", "table", "--table", "attachments", "--oid-column", "content", "--key-column", "id"]
      const refused = (args: ReadonlyArray<string>, pattern: RegExp) =>
        Effect.gen(function*() {
          const result = yield* runCli(args)
          assert.strictEqual(result.code, 2, `${args.join(" ")}\n${result.stderr}`)
          assert.match(result.stderr, pattern)
        })
      yield* refused(["plan", ...t, ...table, "--shard", "0/2"], /--shard: plan shows the whole table/)
      yield* refused(["migrate", ...t, ...table, "--key-template", "{sha}"], /--key-template: \{sha\} is not a field/)
      yield* refused(["migrate", ...t, ...table, "--key-template", "fixed"], /--key-template: names no field/)
      yield* refused(["migrate", ...t, ...table, "--key-template", "a{sha256"], /unbalanced brace/)
      yield* refused(["migrate", ...t, ...table, "--shard", "3/3"], /--shard: i must be below n/)
      yield* refused(["migrate", ...t, ...table, "--shard", "x"], /--shard: "x" is not i\/n/)
      yield* refused(["migrate", ...t, "--profile", "table", "--oid-column", "content", "--key-column", "id"], /--table: is required/)
      yield* refused(["migrate", ...t, "--profile", "table", "--table", "attachments", "--oid-column", "content"], /--key-column: is required/)
      yield* refused(["migrate", ...t, ...table.slice(0, 4), "--oid-column", "nope", "--key-column", "id"], /lacks column\(s\) "nope"/)
      yield* refused(["migrate", ...t, "--profile", "table", "--table", "a.b.c.d", "--oid-column", "x", "--key-column", "id"], /at most 2 allowed/)
      yield* refused(["migrate", ...t, "--table", "attachments"], /--table: is only used with --profile table/)
      yield* refused(["migrate", ...t, "--profile", "table", "--table", "missing_table", "--oid-column", "content", "--key-column", "id"], /missing_table.*does not exist/)
      // nothing was added or marked
      const [col] = yield* sql<{ readonly n: bigint }>`
        SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'attachments' AND column_name = 'sha256'`
      assert.strictEqual(Number(col!.n), 0)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("key columns no primary key or unique index makes unique are refused with exit 2; a unique composite index and a primary key pass", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* target
      const profile = (table: string, ...keys: ReadonlyArray<string>) =>
        ["--profile", "table", "--table", table, "--oid-column", "content", ...keys.flatMap((k) => ["--key-column", k])]
      // duplicate keys across the first page boundary (1024): keyset paging would skip the second of each
      const fill = (table: string, columns: string, values: string) =>
        sql.unsafe(`INSERT INTO ${table} (${columns}, content)
          SELECT ${values}, lo_from_bytea(0, convert_to('${table} ' || i, 'UTF8')) FROM generate_series(1, 1100) AS i`)
      yield* sql`CREATE TABLE plain (id bigint, content oid)`
      yield* fill("plain", "id", "i / 2")
      yield* sql`CREATE TABLE partial (id bigint NOT NULL, content oid)`
      yield* sql`CREATE UNIQUE INDEX partial_id ON partial (id) WHERE id > 100`
      yield* fill("partial", "id", "i")
      yield* sql`CREATE TABLE docs (tenant integer NOT NULL, name text NOT NULL, content oid)`
      yield* sql`CREATE UNIQUE INDEX docs_key ON docs (tenant, name)`
      yield* fill("docs", "tenant, name", "i % 3, 'doc-' || i")
      yield* sql`CREATE TABLE files (id bigint PRIMARY KEY, content oid)`
      yield* fill("files", "id", "i")

      const refused = (args: ReadonlyArray<string>, table: string, columns: string) =>
        Effect.gen(function*() {
          const result = yield* runCli(["migrate", ...t, ...args])
          assert.strictEqual(result.code, 2, `${args.join(" ")}\n${result.stderr}`)
          assert.include(result.stderr, `table ${table}: no primary key or unique index makes (${columns}) unique`)
          assert.include(result.stderr, `help: if the key is unique, create the index, as the table's owner: CREATE UNIQUE INDEX CONCURRENTLY ON "${table}" (${columns});`)
          assert.include(result.stderr, "otherwise give --key-column(s) that are unique")
        })
      yield* refused(profile("plain", "id"), "plain", `"id"`)
      // a partial index is unique only among the rows of its predicate
      yield* refused(profile("partial", "id"), "partial", `"id"`)
      // part of a unique key is not unique
      yield* refused(profile("docs", "tenant"), "docs", `"tenant"`)
      // nothing was added or marked by a refused run
      const [added] = yield* sql<{ readonly n: bigint }>`
        SELECT count(*) AS n FROM information_schema.columns WHERE column_name = 'sha256'`
      assert.strictEqual(Number(added!.n), 0)
      // a command that pages over migrated rows refuses too
      const verify = yield* runCli(["verify", ...t, ...profile("plain", "id")])
      assert.strictEqual(verify.code, 2, verify.stderr)
      assert.include(verify.stderr, "no primary key or unique index makes")

      const composite = yield* runCli(["migrate", ...t, ...profile("docs", "tenant", "name")])
      assert.strictEqual(composite.code, 0, composite.stderr)
      assert.include(composite.stdout, "migrated 1100 object(s)")
      const primary = yield* runCli(["migrate", ...t, ...profile("files", "id")])
      assert.strictEqual(primary.code, 0, primary.stderr)
      assert.include(primary.stdout, "migrated 1100 object(s)")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)
})
