// The migration guide's operational modes, end to end through the executable: --config files, trial
// runs (--limit), the resume watermark, deferred uploads (migrate --deferred-blobs + upload-blobs,
// including a SIGKILL in the middle of upload-blobs).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { killWhen, manifestLines } from "./support/Deferred.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { scopedTempDir } from "./support/TempDir.ts"
import { target } from "./support/Target.ts"

const KiB = 1024
const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)


const insertMany = (n: number, seed: number, size = 2 * KiB) =>
  Effect.gen(function*() {
    const out: Array<InsertedObject> = []
    for (let i = 0; i < n; i++) out.push(yield* insertObject({ bytes: randomBytes(size + i, seed + i) }))
    return out
  })

const markedCount = Effect.map(readRows, (rows) => rows.filter((r) => r.sha2 !== null).length)

const assertInS3 = (objects: ReadonlyArray<InsertedObject>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const rows = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
    for (const o of objects) {
      assert.strictEqual(rows.get(o.hash), o.sha256, `sha2 of ${o.hash}`)
      const got = yield* s3.getObject(o.sha256!)
      assert.isTrue(Option.isSome(got), `${o.sha256} in S3`)
      assert.strictEqual(Buffer.compare(Buffer.from(Option.getOrThrow(got).bytes), Buffer.from(o.bytes!)), 0)
    }
  })

describe("--config FILE", () => {
  it.live("takes settings from the file; a flag and the environment win over it; secrets stay hidden", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const objects = yield* insertMany(3, 1)
      const dir = yield* scopedTempDir("config-")
      const file = NodePath.join(dir, "lo-migrate.json")
      NodeFs.writeFileSync(file, JSON.stringify({
        "pg-url": db.url,
        "s3-url": s3.endpoint,
        "access-key": s3.accessKey,
        "secret-key": s3.secretKey,
        bucket: "no-such-bucket-from-file",
        "storer-threads": 2,
        finalize: false
      }))
      // the file's bucket is wrong: the flag must win
      const ok = yield* runCli(["migrate", "--config", file, "--bucket", s3.bucket])
      assert.strictEqual(ok.code, 0, ok.stderr)
      assert.include(ok.stdout, "migrated 3 object(s)")
      assert.include(ok.stderr, "storer threads:    2")
      yield* assertInS3(objects)
      // the environment wins over the file too
      const viaEnv = yield* runCli(["migrate", `--config=${file}`], { env: { LO_MIGRATE_BUCKET: s3.bucket } })
      assert.strictEqual(viaEnv.code, 0, viaEnv.stderr)
      assert.include(viaEnv.stdout, "3 of 3 were already migrated")
      // the file alone: its (wrong) bucket is used, and refused before any work
      const fileOnly = yield* runCli(["migrate", "--config", file])
      assert.strictEqual(fileOnly.code, 2, fileOnly.stderr)
      assert.include(fileOnly.stderr, "no-such-bucket-from-file")
      // a secret from the file is never printed
      const wrong = new URL(db.url)
      wrong.password = "file-secret-pw-9"
      NodeFs.writeFileSync(file, JSON.stringify({ "pg-url": wrong.toString(), bucket: s3.bucket }))
      const denied = yield* runCli(["migrate", "--config", file])
      assert.strictEqual(denied.code, 2)
      assert.match(denied.stderr, /authentication failed/)
      assert.notInclude(denied.stderr + denied.stdout, "file-secret-pw-9")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("refuses an unknown key, a missing file and invalid JSON with exit 2, naming them", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("config-")
      const unknown = NodePath.join(dir, "unknown.json")
      NodeFs.writeFileSync(unknown, JSON.stringify({ bucket: "b-b-b", "storer-thread": 3 }))
      const a = yield* runCli(["migrate", "--config", unknown])
      assert.strictEqual(a.code, 2)
      assert.include(a.stderr, `config file ${unknown}:1: unknown key "storer-thread"\n  help: did you mean "storer-threads"?`)
      const missing = NodePath.join(dir, "missing.json")
      const b = yield* runCli(["upload-blobs", "m.tsv", "--config", missing])
      assert.strictEqual(b.code, 2)
      assert.include(b.stderr, `config file ${missing}: cannot be read`)
      const invalid = NodePath.join(dir, "invalid.json")
      NodeFs.writeFileSync(invalid, "{ \"bucket\": ")
      const c = yield* runCli(["migrate", "--config", invalid])
      assert.strictEqual(c.code, 2)
      assert.include(c.stderr, `config file ${invalid}: is not valid JSON`)
      const typed = NodePath.join(dir, "typed.json")
      NodeFs.writeFileSync(typed, JSON.stringify({ finalize: "yes" }))
      const d = yield* runCli(["migrate", "--config", typed])
      assert.strictEqual(d.code, 2)
      assert.include(d.stderr, `"finalize" must be true or false`)
    }).pipe(Effect.scoped))
})

describe("trial runs and the resume watermark", () => {
  it.live("--limit migrates at most N objects; the watermark lets the next run start after them", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const objects = yield* insertMany(12, 100)
      const args = ["migrate", ...(yield* target), "--commit-chunk", "2"]
      const trial = yield* runCli([...args, "--limit", "5"])
      assert.strictEqual(trial.code, 0, trial.stderr)
      assert.include(trial.stdout, "migrated 5 object(s)")
      assert.strictEqual(yield* markedCount, 5)
      // the first five keys (listing order) are done, and the watermark says so
      const sorted = [...objects].sort((a, b) => (a.hash < b.hash ? -1 : 1))
      const [mark] = yield* sql<{ key: string }>`SELECT key FROM lo_migrate_watermark WHERE table_name = 'public._nice_binary (hash) -> sha2'`
      assert.strictEqual(mark?.key, sorted[4]!.hash)

      // a row behind the watermark, unmarked: the resumed run starts after the watermark and does not
      // list it; a run that completes clears the watermark, so the next run picks it up
      const behind = yield* insertObject({ bytes: randomBytes(77, 999), hash: "0".repeat(40) }).pipe(
        Effect.andThen(() => sql`UPDATE _nice_binary SET hash = ${"0".repeat(40)} WHERE hash = ${"0".repeat(40)}`)
      )
      void behind
      const resumed = yield* runCli(args)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, "migrated 7 object(s)")
      assert.include(resumed.stderr, `resuming after ${sorted[4]!.hash}`)
      assert.lengthOf(yield* sql`SELECT 1 FROM lo_migrate_watermark`, 0, "cleared after a complete run")
      const full = yield* runCli(args)
      assert.strictEqual(full.code, 1, "the planted row has a wrong SHA-1, so it fails; it was listed")
      assert.match(full.stderr, /FAILED 0{40}.*sha1-mismatch/)
      yield* assertInS3(objects)
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("mode flags are checked before any work", () => {
  it.live("--limit below 1, --staging-dir without --deferred-blobs, --finalize with it: exit 2", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const o = yield* insertObject({ bytes: randomBytes(100, 1) })
      const args = ["migrate", ...(yield* target)]
      const zero = yield* runCli([...args, "--limit", "0"])
      assert.strictEqual(zero.code, 2)
      assert.include(zero.stderr, "invalid setting --limit: 0 is below the minimum of 1")
      const stray = yield* runCli([...args, "--staging-dir", "/tmp/x"])
      assert.strictEqual(stray.code, 2)
      assert.include(stray.stderr, "invalid setting --staging-dir: is only used with --deferred-blobs")
      const dir = yield* scopedTempDir("deferred-")
      const both = yield* runCli([...args, "--deferred-blobs", NodePath.join(dir, "m.tsv"), "--finalize"])
      assert.strictEqual(both.code, 2)
      assert.include(both.stderr, "invalid setting --finalize: cannot be used with --deferred-blobs")
      assert.deepStrictEqual(NodeFs.readdirSync(dir), [], "nothing created")
      assert.strictEqual(yield* markedCount, 0)
      assert.isTrue(Option.isNone(yield* (yield* TestS3).getObject(o.sha256!)))
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("resume after a kill", () => {
  it.live("a run killed (SIGKILL) leaves a watermark below which every row is marked; the rerun resumes there", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const objects = yield* insertMany(800, 1000, 8 * KiB)
      // slow enough that the first flush (after about a second) comes well before the end
      const args = ["migrate", ...(yield* target), "--commit-chunk", "2", "--storer-threads", "1", "--committer-threads", "1"]
      const killed = yield* runCli(args, {
        onStart: killWhen(Effect.map(sql<{ key: string }>`SELECT key FROM lo_migrate_watermark`, (rows) => rows.length > 0))
      })
      assert.strictEqual(killed.signal, "SIGKILL", `killed once a watermark was written; stdout: ${killed.stdout}`)
      const [mark] = yield* sql<{ key: string }>`SELECT key FROM lo_migrate_watermark WHERE table_name = 'public._nice_binary (hash) -> sha2'`
      assert.isDefined(mark)
      const [below] = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE hash <= ${mark!.key}::bpchar AND sha2 IS NULL`
      assert.strictEqual(Number(below!.n), 0, "every row up to the watermark is marked")
      const partial = yield* markedCount
      assert.isBelow(partial, 800)

      const resumed = yield* runCli(args)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stderr, `resuming after ${mark!.key}`)
      assert.include(resumed.stdout, `migrated ${800 - partial} object(s)`)
      assert.lengthOf(yield* sql`SELECT 1 FROM lo_migrate_watermark`, 0)
      yield* assertInS3(objects)
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("deferred uploads", () => {
  it.live("migrate --deferred-blobs stages without S3 or marks; upload-blobs uploads, marks, cleans up", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects = yield* insertMany(6, 200)
      const big = yield* insertObject({ bytes: randomBytes(40 * KiB, 299), mime: "text/plain; charset=utf-8" })
      const all = [...objects, big]
      const dir = yield* scopedTempDir("deferred-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staging = NodePath.join(dir, "staged")
      const s3 = yield* TestS3
      const stage = ["migrate", ...(yield* target), "--deferred-blobs", manifest, "--staging-dir", staging, "--in-mem-max", "1"]
      const first = yield* runCli(stage)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, "staged 7 object(s)")
      assert.strictEqual(yield* markedCount, 0, "no row marked by the staging run")
      assert.deepStrictEqual(yield* s3.listKeys(), [], "S3 untouched")
      const lines = manifestLines(manifest)
      assert.strictEqual(lines[0], "staged_path\ts3_key\trow_key\tsize\tsha256\tsha1\tmd5\tcontent_type\toid")
      assert.lengthOf(lines, 8)
      assert.lengthOf(NodeFs.readdirSync(staging), 7)
      assert.isTrue(lines.some((l) => l.includes("text/plain; charset=utf-8")))

      // rerun: only objects not yet staged are appended
      const extra = yield* insertObject({ bytes: randomBytes(500, 300) })
      const second = yield* runCli(stage)
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stdout, "staged 1 object(s)")
      assert.lengthOf(manifestLines(manifest), 9)

      const upload = ["upload-blobs", manifest, ...(yield* target), "--commit-chunk", "3"]
      const up = yield* runCli(upload)
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 8 object(s)")
      assert.match(up.stderr, /upload-blobs: 8 of 8 lines \(100\.0%\), .*, 8 uploaded and marked, 0 already done, 0 failed/)
      yield* assertInS3([...all, extra])
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [], "staged files removed once their rows are marked")
      const again = yield* runCli(upload)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "uploaded 0 object(s)")
      assert.include(again.stdout, "8 line(s) were already done")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a missing or corrupted staged file is a failure naming its line, never a silent skip", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects = yield* insertMany(3, 400)
      const dir = yield* scopedTempDir("deferred-")
      const manifest = NodePath.join(dir, "m.tsv")
      const staged = yield* runCli(["migrate", ...(yield* target), "--deferred-blobs", manifest])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const lines = manifestLines(manifest)
      const path2 = lines[1]!.split("\t")[0]!
      const path3 = lines[2]!.split("\t")[0]!
      NodeFs.rmSync(path2)
      NodeFs.writeFileSync(path3, "not the staged bytes")
      const up = yield* runCli(["upload-blobs", manifest, ...(yield* target)])
      assert.strictEqual(up.code, 1, up.stderr)
      assert.include(up.stdout, "uploaded 1 object(s)")
      assert.match(up.stderr, new RegExp(`staged-file-missing: manifest line 2: staged file ${path2} is missing`))
      assert.match(up.stderr, /staged-file-corrupt: manifest line 3: /)
      assert.strictEqual(yield* markedCount, 1)
      void objects
      // a manifest that is not there is a usage problem, found before any work
      const none = yield* runCli(["upload-blobs", NodePath.join(dir, "none.tsv"), ...(yield* target)])
      assert.strictEqual(none.code, 2)
      assert.include(none.stderr, `manifest ${NodePath.join(dir, "none.tsv")}: cannot be read (ENOENT)`)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a staging run killed (SIGKILL) in the middle and run again stages each row exactly once", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects = yield* insertMany(300, 800, 4 * KiB)
      const dir = yield* scopedTempDir("deferred-")
      const manifest = NodePath.join(dir, "m.tsv")
      const staging = NodePath.join(dir, "staged")
      const stage = ["migrate", ...(yield* target), "--deferred-blobs", manifest, "--staging-dir", staging, "--in-mem-max", "2"]
      const killed = yield* runCli(stage, {
        onStart: killWhen(Effect.sync(() => NodeFs.existsSync(manifest) && manifestLines(manifest).length > 20))
      })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const before = manifestLines(manifest).length - 1
      assert.isBelow(before, 300)
      const again = yield* runCli(stage)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, `staged ${300 - before} object(s)`)
      const rowKeys = manifestLines(manifest).slice(1).map((l) => l.split("\t")[2])
      assert.strictEqual(new Set(rowKeys).size, 300, "each row staged once")
      assert.lengthOf(rowKeys, 300)
      assert.isFalse(NodeFs.readdirSync(staging).some((f) => f.endsWith(".staging-tmp")), "no temp file left")
      const up = yield* runCli(["upload-blobs", manifest, ...(yield* target)])
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 300 object(s)")
      yield* assertInS3(objects)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("upload-blobs killed (SIGKILL) in the middle and run again completes the job", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const objects = yield* insertMany(300, 500, 8 * KiB)
      const dir = yield* scopedTempDir("deferred-")
      const manifest = NodePath.join(dir, "m.tsv")
      const staging = NodePath.join(dir, "staged")
      const staged = yield* runCli(["migrate", ...(yield* target), "--deferred-blobs", manifest, "--staging-dir", staging])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const upload = ["upload-blobs", manifest, ...(yield* target), "--commit-chunk", "5", "--storer-threads", "2"]
      const killed = yield* runCli(upload, {
        onStart: killWhen(Effect.map(
          sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`,
          ([r]) => Number(r!.n) >= 20
        ))
      })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const partial = yield* markedCount
      assert.isAbove(partial, 0)
      assert.isBelow(partial, 300)
      const resumed = yield* runCli(upload)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, `uploaded ${300 - partial} object(s)`)
      yield* assertInS3(objects)
      assert.deepStrictEqual(NodeFs.readdirSync(staging), [])
    }).pipe(Effect.scoped, Effect.provide(env)))
})
