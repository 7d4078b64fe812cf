// Content types that cannot travel as an HTTP header (CR/LF, non-ASCII file names, NUL, huge values),
// end to end through the executable against s3rver: the rows migrate with the header-safe value of
// src/domain/ContentType.ts, the others too, the run exits 0, one warning names each changed row, and
// no header or metadata is ever added by a row's value. The same for --profile table and for a
// manifest (written by an older version) that upload-blobs reads.
import { HeadObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { manifestEntries } from "./support/Deferred.ts"
import * as Manifest from "../src/s3/Manifest.ts"
import { createLargeObject, createNice2Schema, insertObject, randomBytes, readRows, sha256Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** [stored content type, the Content-Type S3 must hold, whether the run warns about it] */
type Case = readonly [string, string, boolean]

const cases: ReadonlyArray<Case> = [
  ["text/plain; charset=utf-8", "text/plain; charset=utf-8", false],
  ["text/plain; name=\"Bericht März.txt\"", "text/plain; name*=UTF-8''Bericht%20M%C3%A4rz.txt", true],
  ["image/jpeg; name=\"📷 Ferien.jpg\"", "image/jpeg; name*=UTF-8''%F0%9F%93%B7%20Ferien.jpg", true],
  ["application/pdf; name=Übersicht 2024.pdf", "application/pdf; name*=UTF-8''%C3%9Cbersicht%202024.pdf", true],
  ["text/plain\r\nx-amz-meta-evil: 1", "application/octet-stream", true],
  ["text/html;\r\nx-amz-meta-evil=1", "text/html;x-amz-meta-evil=1", true],
  ["text/plain;\r\n x-amz-acl: public-read", "text/plain", true],
  ["multipart/mixed;\r\n\tboundary=\"----=_Part_0_1.1\"", "multipart/mixed;boundary=\"----=_Part_0_1.1\"", true],
  ["text/plain\u007F", "text/plain", true],
  ["täxt/plain", "application/octet-stream", true],
  [`text/plain; x-note="${"a".repeat(5000)}"`, "text/plain", true]
]

/** Content-Type and user metadata of an object, as HEAD answers them. */
const head = (key: string) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const answer = yield* s3.use("HeadObject", (c, abortSignal) => c.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal }))
    return { contentType: answer.ContentType, metadataKeys: Object.keys(answer.Metadata ?? {}).sort() }
  })

/** The stderr lines that warn about `rowKey`'s content type. */
const warningsFor = (stderr: string, rowKey: string) =>
  stderr.split("\n").filter((l) => l.includes(`row ${rowKey}: content type`))

describe("content types that cannot be sent as they are stored", () => {
  it.live("nice2: every row migrates with the header-safe type, exit 0, one warning per changed row, no metadata added", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      // the fixture's varchar(255) would refuse the very long value
      yield* sql`ALTER TABLE _nice_binary ALTER COLUMN mime_type TYPE text`
      const rows = []
      for (const [i, [stored]] of cases.entries()) rows.push(yield* insertObject({ bytes: randomBytes(100 + i, 500 + i), mime: stored }))

      const result = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, `migrated ${cases.length} object(s)`)
      const marked = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      for (const [i, [stored, sent, warned]] of cases.entries()) {
        const row = rows[i]!
        const what = JSON.stringify(stored.slice(0, 60))
        assert.strictEqual(marked.get(row.hash), row.sha256, `row of ${what} marked`)
        const h = yield* head(row.sha256!)
        assert.strictEqual(h.contentType, sent, what)
        assert.deepStrictEqual(h.metadataKeys, ["oid", "sha1", "sha256"], what)
        const warnings = warningsFor(result.stderr, row.hash)
        assert.lengthOf(warnings, warned ? 1 : 0, `${what}: ${warnings.join("\n")}`)
        // the stored value is quoted capped, never whole
        for (const w of warnings) assert.isBelow(w.length, 1200, what)
      }
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--profile table: the --mime-column value is made header-safe the same way", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE docs (id text PRIMARY KEY, content oid, mime text)`
      const picked = [cases[0]!, cases[2]!, cases[4]!]
      const docs = []
      for (const [i, [stored]] of picked.entries()) {
        const bytes = randomBytes(300 + i, 600 + i)
        yield* sql`INSERT INTO docs (id, content, mime) VALUES (${`doc-${i}`}, ${yield* createLargeObject(bytes)}, ${stored})`
        docs.push({ id: `doc-${i}`, sha256: sha256Hex(bytes) })
      }
      const result = yield* runCli([
        "migrate", ...(yield* target), "--profile", "table", "--table", "docs", "--oid-column", "content",
        "--key-column", "id", "--mime-column", "mime", "--key-template", "docs/{key}/{sha256}"
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      for (const [i, [, sent, warned]] of picked.entries()) {
        const h = yield* head(`docs/${docs[i]!.id}/${docs[i]!.sha256}`)
        assert.strictEqual(h.contentType, sent)
        assert.deepStrictEqual(h.metadataKeys, ["oid", "sha1", "sha256"])
        assert.lengthOf(warningsFor(result.stderr, docs[i]!.id), warned ? 1 : 0)
      }
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("upload-blobs: a manifest holding unsendable content types (an older version's) uploads them header-safe", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const picked: ReadonlyArray<Case> = [
        cases[0]!,
        cases[1]!,
        cases[4]!,
        // NUL cannot be stored in a PostgreSQL text column, but a manifest line can hold one
        ["application/pdf\u0000", "application/pdf", true]
      ]
      const rows = []
      for (let i = 0; i < picked.length; i++) rows.push(yield* insertObject({ bytes: randomBytes(200 + i, 700 + i) }))
      const dir = yield* scopedTempDir("unsafe-types-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staged = yield* runCli(["migrate", ...(yield* target), "--deferred-blobs", manifest, "--staging-dir", NodePath.join(dir, "staged")])
      assert.strictEqual(staged.code, 0, staged.stderr)
      // as an older version wrote them: the stored values, unchanged (the format escapes CR, LF, tab)
      const typeOf = new Map(rows.map((r, i) => [r.hash, picked[i]![0]]))
      const entries = manifestEntries(manifest).map((e) => ({ ...e, contentType: typeOf.get(e.rowKey)! }))
      NodeFs.writeFileSync(manifest, Manifest.header + entries.map(Manifest.encode).join(""))

      const up = yield* runCli(["upload-blobs", manifest, ...(yield* target)])
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, `uploaded ${picked.length} object(s)`)
      const marked = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      for (const [i, [stored, sent, warned]] of picked.entries()) {
        const row = rows[i]!
        assert.strictEqual(marked.get(row.hash), row.sha256)
        const h = yield* head(row.sha256!)
        assert.strictEqual(h.contentType, sent, JSON.stringify(stored))
        assert.deepStrictEqual(h.metadataKeys, ["oid", "sha1", "sha256"])
        assert.lengthOf(warningsFor(up.stderr, row.hash), warned ? 1 : 0, JSON.stringify(stored))
      }
    }).pipe(Effect.scoped, Effect.provide(env)))
})
