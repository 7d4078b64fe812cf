// Deferred uploads (migrate --deferred-blobs, then upload-blobs) with --profile table and --profile
// relstorage, end to end through the executable: the staging run makes no S3 request (a proxy in front
// of S3 counts them) and marks no staged row; upload-blobs uploads and records every row with exact
// bytes; a SIGKILL in the middle of upload-blobs and a rerun finish exactly; upload-blobs with other
// flags than the staging run fails each line with a reason; relstorage's inline blobs are recorded by
// the staging run itself, in the blob_state database of --dest-pg-url too.
import { assert, describe, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { killWhen, manifestEntries } from "./support/Deferred.ts"
import { createDocs, type Doc, docsArgs, sameBytes } from "./support/DocsTable.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import * as Manifest from "../src/s3/Manifest.ts"
import { randomBytes, sha256Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlobBytes, readState } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const KiB = 1024
const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

/** The target flags with S3 reached through the counting proxy. */
const viaProxy = Effect.gen(function*() {
  const proxy = yield* FaultProxy
  return (yield* target).map((arg, i, all) => (all[i - 1] === "--s3-url" ? proxy.endpoint : arg))
})

const deferredPaths = Effect.gen(function*() {
  const dir = yield* scopedTempDir("deferred-")
  return { manifest: NodePath.join(dir, "blobs.tsv"), staging: NodePath.join(dir, "staged") }
})

/** The summary's FAILED lines (one per failed manifest line) that contain `text`. */
const failedLines = (stderr: string, text: string) => stderr.split("\n").filter((l) => l.startsWith("FAILED ") && l.includes(text)).length

// ---- table ----

// names that the manifest must escape (tab, newline, backslash) and JSON must quote
const oddName = (i: number) => [`doc ${i}\ttab`, `doc ${i}\nline`, `doc ${i} back\\slash "q"`, `doc-${i}`][i % 4]!

const docKey = (d: { readonly tenant: number | string; readonly name: string }) => JSON.stringify([String(d.tenant), d.name])
const docObjectKey = (d: Doc) => `docs/${d.tenant}/${d.name}/${d.sha256}`

const markedDocs = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [r] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM docs WHERE sha256 IS NOT NULL`
  return Number(r!.n)
})

/** Every marked row's object is in S3 under its templated key with bytes hashing to its sha256. */
const assertMarkedDocsBacked = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const s3 = yield* TestS3
  const rows = yield* sql<{ readonly tenant: number; readonly name: string; readonly sha: string }>`
    SELECT tenant, name, sha256::text AS sha FROM docs WHERE sha256 IS NOT NULL`
  for (const r of rows) {
    const stored = yield* s3.getObject(`docs/${r.tenant}/${r.name}/${r.sha}`)
    assert.isTrue(Option.isSome(stored), `${docKey(r)} is marked but its object is not in S3`)
    assert.strictEqual(sha256Hex(Option.getOrThrow(stored).bytes), r.sha, docKey(r))
  }
})

/** Every doc is marked with its SHA-256, and S3 holds its exact bytes and content type under its key. */
const assertDocsMigrated = (docs: ReadonlyArray<Doc>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const s3 = yield* TestS3
    const rows = yield* sql<{ readonly tenant: number; readonly name: string; readonly sha: string | null }>`
      SELECT tenant, name, sha256::text AS sha FROM docs`
    const marked = new Map(rows.map((r) => [docKey(r), r.sha]))
    for (const d of docs) {
      assert.strictEqual(marked.get(docKey(d)), d.sha256, `sha256 of ${docKey(d)}`)
      const stored = Option.getOrThrow(yield* s3.getObject(docObjectKey(d)))
      assert.isTrue(sameBytes(stored.bytes, d.bytes), `bytes of ${docKey(d)}`)
      assert.strictEqual(stored.contentType, d.mime ?? "application/octet-stream")
    }
  })

describe("deferred uploads with --profile table", () => {
  it.live("stages with no S3 request and no mark; upload-blobs marks every row; composite keys with tabs, newlines, backslashes round-trip", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const docs = yield* createDocs(24, 1, { names: oddName, size: (i) => 200 + i * 120 })
      const { manifest, staging } = yield* deferredPaths
      // --in-mem-max 1: the larger objects pass through temp files on their way to the staging dir
      const stage = ["migrate", ...(yield* viaProxy), ...docsArgs, "--deferred-blobs", manifest, "--staging-dir", staging, "--in-mem-max", "1"]
      const staged = yield* runCli(stage)
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stdout, "staged 24 object(s)")
      assert.notInclude(staged.stdout, "inline")
      assert.deepStrictEqual(yield* proxy.log, [], "the staging run made no S3 request")
      assert.strictEqual(yield* markedDocs, 0, "no row marked by the staging run")

      // each line names its row by the pipeline key (a JSON array) and its object by the key template
      const entries = manifestEntries(manifest)
      assert.lengthOf(entries, 24)
      const byKey = new Map(docs.map((d) => [docKey(d), d]))
      for (const e of entries) {
        const d = byKey.get(e.rowKey)
        assert.isDefined(d, `manifest row key ${JSON.stringify(e.rowKey)} is a row of docs`)
        assert.strictEqual(e.sha256, d!.sha256)
        assert.strictEqual(e.s3Key, docObjectKey(d!))
        assert.strictEqual(e.size, d!.bytes.length)
        assert.strictEqual(e.contentType, d!.mime ?? "application/octet-stream")
        assert.isTrue(sameBytes(NodeFs.readFileSync(e.stagedPath), d!.bytes), `staged bytes of ${e.rowKey}`)
      }
      assert.strictEqual(new Set(entries.map((e) => e.rowKey)).size, 24)
      const again = yield* runCli(stage)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "staged 0 object(s)")

      const upload = ["upload-blobs", manifest, ...(yield* target), ...docsArgs, "--commit-chunk", "5"]
      const up = yield* runCli(upload)
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 24 object(s)")
      yield* assertDocsMigrated(docs)
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [], "staged files removed once their rows are marked")
      const verified = yield* runCli(["verify", ...(yield* target), ...docsArgs, "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "24 good, 0 bad")
      const done = yield* runCli(upload)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, "uploaded 0 object(s)")
      assert.include(done.stdout, "24 line(s) were already done")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("upload-blobs with other flags than the staging run fails each line, saying why; nothing is uploaded or marked", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const docs = yield* createDocs(4, 50, { names: (i) => `doc-${i}`, size: () => 300 })
      yield* sql`CREATE TABLE other_docs (LIKE docs INCLUDING ALL)`
      const { manifest, staging } = yield* deferredPaths
      const staged = yield* runCli(["migrate", ...(yield* target), ...docsArgs, "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const upload = ["upload-blobs", manifest, ...(yield* target)]
      const withFlags = (replace: Record<string, string | undefined>) =>
        docsArgs.flatMap((arg, i) => {
          if (i % 2 === 1) return []
          const value = arg in replace ? replace[arg] : docsArgs[i + 1]
          return value === undefined ? [] : [arg, value]
        })

      // another table: the rows are not there, and each line says where it looked
      const otherTable = yield* runCli([...upload, ...withFlags({ "--table": "other_docs" })])
      assert.strictEqual(otherTable.code, 1, otherTable.stderr)
      assert.include(otherTable.stdout, "uploaded 0 object(s)")
      assert.strictEqual(failedLines(otherTable.stderr, "does not exist in other_docs"), 4, otherTable.stderr)
      assert.match(otherTable.stderr, new RegExp(`FAILED \\["0","doc-0"\\] \\(oid \\d+\\): row-vanished: manifest line \\d+: row \\["0","doc-0"\\] does not exist in other_docs`))
      // another key template: the object would not be where verify looks for it
      const otherTemplate = yield* runCli([...upload, ...withFlags({ "--key-template": undefined })])
      assert.strictEqual(otherTemplate.code, 1, otherTemplate.stderr)
      assert.strictEqual(failedLines(otherTemplate.stderr, "manifest-mismatch"), 4, otherTemplate.stderr)
      assert.include(otherTemplate.stderr, `its S3 key ${docObjectKey(docs[0]!)} is not the one these settings give (${docs[0]!.sha256})`)
      // another key: part of the primary key is not unique, refused before any line is read
      const otherKey = yield* runCli([...upload, "--profile", "table", "--table", "docs", "--oid-column", "content", "--key-column", "tenant"])
      assert.strictEqual(otherKey.code, 2, otherKey.stderr)
      assert.include(otherKey.stderr, `no primary key or unique index makes ("tenant") unique`)
      // a table keyed by an integer: a composite key's text is no integer; each line fails alone, not the run
      yield* sql`CREATE TABLE numbered (id integer PRIMARY KEY, content oid)`
      const integerKey = yield* runCli([...upload, "--profile", "table", "--table", "numbered", "--oid-column", "content", "--key-column", "id"])
      assert.strictEqual(integerKey.code, 1, integerKey.stderr)
      assert.strictEqual(failedLines(integerKey.stderr, "manifest-mismatch"), 4, integerKey.stderr)
      assert.include(integerKey.stderr, "invalid input syntax for type integer")

      // the run lock is migrate's (the table as the catalog names it): held elsewhere, upload-blobs is refused
      yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* sql.reserve
        const lock = [`lo-migrate`, `public.docs`]
        yield* session.execute("SELECT pg_advisory_lock(hashtext($1), hashtext($2))", lock, undefined)
        const locked = yield* runCli([...upload, ...docsArgs])
        yield* session.execute("SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", lock, undefined)
        assert.strictEqual(locked.code, 2, locked.stderr)
        assert.include(locked.stderr, `another lo-migrate run is working on docs`)
      }))

      assert.deepStrictEqual(yield* s3.listKeys(), [], "nothing uploaded")
      assert.strictEqual(yield* markedDocs, 0)
      assert.lengthOf(NodeFs.readdirSync(staging), 4, "staged files kept")
      const right = yield* runCli([...upload, ...docsArgs])
      assert.strictEqual(right.code, 0, right.stderr)
      assert.include(right.stdout, "uploaded 4 object(s)")
      yield* assertDocsMigrated(docs)
      // a line whose row key is not this table's key shape at all (another profile's manifest)
      const [first] = manifestEntries(manifest)
      NodeFs.appendFileSync(manifest, Manifest.encode({ ...first!, rowKey: "0123abcd" }))
      const foreign = yield* runCli([...upload, ...docsArgs])
      assert.strictEqual(foreign.code, 1, foreign.stderr)
      assert.include(foreign.stdout, "4 line(s) were already done; 1 failed")
      assert.include(foreign.stderr, `manifest-mismatch: manifest line 6: row key 0123abcd does not fit docs: expected a JSON array of 2 texts ("tenant", "name")`)
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("upload-blobs killed (SIGKILL) midway and run again marks every row exactly once its object is in S3", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const docs = yield* createDocs(300, 1000, { names: (i) => `doc-${i}`, size: () => 8 * KiB })
      const { manifest, staging } = yield* deferredPaths
      const staged = yield* runCli(["migrate", ...(yield* target), ...docsArgs, "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const upload = ["upload-blobs", manifest, ...(yield* target), ...docsArgs, "--commit-chunk", "5", "--storer-threads", "2"]
      const killed = yield* runCli(upload, { onStart: killWhen(Effect.map(Effect.provideService(markedDocs, SqlClient.SqlClient, sql), (n) => n >= 20)) })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const partial = yield* markedDocs
      assert.isAbove(partial, 0)
      assert.isBelow(partial, 300)
      yield* assertMarkedDocsBacked

      const resumed = yield* runCli(upload)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, `uploaded ${300 - partial} object(s)`)
      assert.include(resumed.stdout, `${partial} line(s) were already done`)
      yield* assertDocsMigrated(docs)
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [])
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)
})

// ---- relstorage ----

const blobKeyOf = (prefix: string, zoid: number, tid: number) =>
  `${prefix}blobs/${zoid.toString(16).padStart(16, "0")}/${tid.toString(16).padStart(16, "0")}.blob`

describe("deferred uploads with --profile relstorage", () => {
  it.live("the staging run records inline blobs itself and stages only the S3-bound ones; upload-blobs records those", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      yield* createBlobChunk("history-preserving")
      const inline = new Map([
        ["1/10", yield* insertBlobBytes(1, 10, [new TextEncoder().encode("small one")])],
        ["1/12", yield* insertBlobBytes(1, 12, [randomBytes(KiB, 1), randomBytes(KiB, 2)])]
      ])
      const toS3 = new Map([
        ["1/11", yield* insertBlobBytes(1, 11, [randomBytes(150 * KiB, 3)])],
        ["2/10", yield* insertBlobBytes(2, 10, [randomBytes(60 * KiB, 4), randomBytes(60 * KiB, 5), randomBytes(60 * KiB, 6)])],
        ["3/7", yield* insertBlobBytes(3, 7, [randomBytes(5 * KiB, 7)])]
      ])
      const objectKey = (key: string) => {
        const [zoid, tid] = key.split("/").map(Number)
        return blobKeyOf("tenant1/", zoid!, tid!)
      }
      const profile = ["--profile", "relstorage", "--s3-prefix", "tenant1", "--blob-threshold", "4096"]
      const { manifest, staging } = yield* deferredPaths
      const stage = ["migrate", ...(yield* viaProxy), ...profile, "--deferred-blobs", manifest, "--staging-dir", staging, "--in-mem-max", "64"]
      const staged = yield* runCli(stage)
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stdout, "staged 3 object(s)")
      assert.include(staged.stdout, "recorded 2 inline object(s)")
      assert.deepStrictEqual(yield* proxy.log, [], "the staging run made no S3 request")

      // inline blobs are recorded (they need no S3); the S3-bound ones only staged
      const state = yield* readState
      assert.deepStrictEqual(state.map((r) => `${r.zoid}/${r.tid}`), ["1/10", "1/12"])
      for (const r of state) {
        const bytes = inline.get(`${r.zoid}/${r.tid}`)!
        assert.isNull(r.s3_key)
        assert.isTrue(sameBytes(r.data!, bytes))
        assert.strictEqual(r.blob_size, String(bytes.length))
      }
      const entries = manifestEntries(manifest)
      assert.deepStrictEqual(entries.map((e) => e.rowKey).sort(), [...toS3.keys()].sort())
      for (const e of entries) {
        assert.strictEqual(e.s3Key, objectKey(e.rowKey))
        assert.strictEqual(e.sha256, sha256Hex(toS3.get(e.rowKey)!))
        assert.strictEqual(e.size, toS3.get(e.rowKey)!.length)
      }
      const again = yield* runCli(stage)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "staged 0 object(s)")
      assert.notInclude(again.stdout, "inline")

      const upload = ["upload-blobs", manifest, ...(yield* target), "--profile", "relstorage", "--s3-prefix", "tenant1"]
      const up = yield* runCli(upload)
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 3 object(s)")
      const after = yield* readState
      assert.lengthOf(after, 5)
      for (const r of after) {
        const key = `${r.zoid}/${r.tid}`
        const bytes = toS3.get(key)
        if (bytes === undefined) {
          assert.isTrue(sameBytes(r.data!, inline.get(key)!), `inline ${key} unchanged`)
          continue
        }
        // s3_key without the prefix, as zodb-pgjsonb stores it; the object under tenant1/
        assert.strictEqual(`tenant1/${r.s3_key}`, objectKey(key))
        assert.isNull(r.data)
        assert.strictEqual(r.blob_size, String(bytes.length))
        const stored = Option.getOrThrow(yield* s3.getObject(objectKey(key)))
        assert.isTrue(sameBytes(stored.bytes, bytes), `bytes of ${key}`)
        assert.strictEqual(stored.metadata.sha256, sha256Hex(bytes))
      }
      assert.deepStrictEqual([...(yield* s3.listKeys())].sort(), [...toS3.keys()].map(objectKey).sort(), "inline blobs made no S3 object")
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [])

      // every blob is checked: the 3 in S3 (HEAD, download) and the 2 inline ones (length)
      const verified = yield* runCli(["verify", ...(yield* target), "--profile", "relstorage", "--s3-prefix", "tenant1", "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "5 good, 0 bad")
      const migrated = yield* runCli(["migrate", ...(yield* target), ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, "5 of 5 were already migrated")
      const done = yield* runCli(upload)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.include(done.stdout, "3 line(s) were already done")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("--dest-pg-url in both halves; upload-blobs killed (SIGKILL) midway and rerun records every blob; a packed blob fails naming it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createBlobChunk("history-free")
      // 200 blobs: every fourth one inline (500 bytes), the others to S3 (6 KiB)
      const blobs = new Map<string, Uint8Array>()
      for (let z = 1; z <= 200; z++) blobs.set(`${z}/${5000 + z}`, yield* insertBlobBytes(z, 5000 + z, [randomBytes(z % 4 === 0 ? 500 : 6 * KiB, z)]))
      const isInline = (key: string) => Number(key.split("/")[0]) % 4 === 0
      const objectKey = (key: string) => {
        const [zoid, tid] = key.split("/").map(Number)
        return blobKeyOf("", zoid!, tid!)
      }
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const dest = Context.get(
        yield* Layer.build(PgClient.layer({ url: Redacted.make(other.url), maxConnections: 2 })),
        SqlClient.SqlClient
      )
      const inDest = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => Effect.provideService(effect, SqlClient.SqlClient, dest)
      const recordedInS3 = inDest(Effect.map(readState, (rows) => rows.filter((r) => r.s3_key !== null)))

      const args = [...(yield* target), "--profile", "relstorage", "--blob-threshold", "4096", "--dest-pg-url", other.url]
      const { manifest, staging } = yield* deferredPaths
      const staged = yield* runCli(["migrate", ...args, "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stdout, "staged 150 object(s)")
      assert.include(staged.stdout, "recorded 50 inline object(s)")
      const [local] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      assert.isFalse(local!.present, "nothing created next to blob_chunk")
      const inlineRows = yield* inDest(readState)
      assert.lengthOf(inlineRows, 50)
      for (const r of inlineRows) assert.isTrue(sameBytes(r.data!, blobs.get(`${r.zoid}/${r.tid}`)!))

      // a blob packed away after staging: its line fails, naming it; its staged file is kept
      const packed = manifestEntries(manifest).find((e) => e.rowKey === "1/5001")!
      yield* sql`DELETE FROM blob_chunk WHERE zoid = 1`
      // another --s3-prefix than the staging run's: every line refused before any upload
      const upload = ["upload-blobs", manifest, ...args, "--commit-chunk", "5", "--storer-threads", "2"]
      const prefixed = yield* runCli([...upload, "--s3-prefix", "elsewhere"])
      assert.strictEqual(prefixed.code, 1, prefixed.stderr)
      assert.strictEqual(failedLines(prefixed.stderr, "manifest-mismatch"), 149, prefixed.stderr.split("\n").filter((l) => !l.includes("manifest-mismatch")).join("\n"))
      assert.deepStrictEqual(yield* s3.listKeys(), [])

      const killed = yield* runCli(upload, { onStart: killWhen(Effect.map(recordedInS3, (rows) => rows.length >= 20)) })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const partial = yield* recordedInS3
      assert.isBelow(partial.length, 149)
      // the invariant at the moment of the kill: every recorded blob's object is in S3 with its bytes
      for (const r of partial) {
        const stored = Option.getOrThrow(yield* s3.getObject(r.s3_key!))
        assert.isTrue(sameBytes(stored.bytes, blobs.get(`${r.zoid}/${r.tid}`)!))
      }

      const resumed = yield* runCli(upload)
      assert.strictEqual(resumed.code, 1, resumed.stderr)
      assert.include(resumed.stdout, `uploaded ${149 - partial.length} object(s)`)
      assert.include(resumed.stderr, "FAILED 1/5001 (oid")
      assert.include(resumed.stderr, "row-vanished: manifest line")
      assert.include(resumed.stderr, "row 1/5001 does not exist in blob_chunk")
      assert.isTrue(NodeFs.existsSync(packed.stagedPath), "the packed blob's staged file is kept")
      const state = yield* inDest(readState)
      assert.lengthOf(state, 199)
      for (const r of state) {
        const key = `${r.zoid}/${r.tid}`
        assert.strictEqual(r.s3_key, isInline(key) ? null : objectKey(key), key)
        if (isInline(key)) continue
        const stored = Option.getOrThrow(yield* s3.getObject(r.s3_key!))
        assert.isTrue(sameBytes(stored.bytes, blobs.get(key)!), `bytes of ${key}`)
      }
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [NodePath.basename(packed.stagedPath)])
    }).pipe(Effect.scoped, Effect.provide(env)), 240_000)
})
