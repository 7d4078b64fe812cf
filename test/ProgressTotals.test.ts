// Every long command shows done of a total, a percentage and an ETA, in migrate's three forms, through the
// executable: verify, prune, plan's sampling and upload-blobs. JSON (stdout carries JSON lines only):
// `started` has the total, `done` rises to it, the `summary` says done == total. Plain: "N of M objects
// (P%)" every --interval. TTY (forced into a pipe): the bar, redrawn, ending at 100%. The totals are the
// rows left (a resumed verify counts only those after --from), unknown as `?` with --no-count, 0 of 0 for
// an empty table, and a run that fails or is interrupted ends with a summary saying so.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as NodePath from "node:path"
import { type CliResult, runCli } from "./support/Cli.ts"
import { docsArgs, createDocs } from "./support/DocsTable.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { addSha2Column, createNice2Schema, insertObject, type InsertedObject, randomBytes, sha256Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { createBlobChunk, insertBlob } from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import * as TcpProxy from "./support/TcpProxy.ts"
import { scopedTempDir } from "./support/TempDir.ts"
import { pgFlags, target, targetVia } from "./support/Target.ts"
import { deleteObject, migratedObjects } from "./support/Verify.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const withProxy = Layer.provideMerge(FaultProxy.layer, env)

type Event = Record<string, unknown>

/** stdout as JSON lines: every line must parse (stdout carries nothing else). */
const events = (result: CliResult): ReadonlyArray<Event> =>
  result.stdout.trimEnd().split("\n").map((line) => {
    try {
      return JSON.parse(line) as Event
    } catch {
      throw new Error(`stdout line is not JSON: ${line}\n--- stderr:\n${result.stderr}`)
    }
  })

/**
 * The shape every JSON run must have: `started` first with the total, `progress` events whose total is
 * that one (or null once gone past) and whose done only rises and never exceeds it, the `summary` last.
 */
const checkEvents = (all: ReadonlyArray<Event>, task: string) => {
  const started = all[0]!
  assert.deepInclude(started, { event: "started", task })
  const progress = all.filter((e) => e.event === "progress")
  let before = 0
  for (const e of progress) {
    assert.strictEqual(e.task, task)
    const done = e.done as number
    assert.isAtLeast(done, before)
    before = done
    if (e.total !== null) {
      assert.strictEqual(e.total, started.total)
      assert.isAtMost(done, e.total as number)
      assert.isAtMost(e.percent as number, 100)
    }
  }
  const summary = all.at(-1)!
  assert.deepInclude(summary, { event: "summary", task })
  assert.strictEqual(all.filter((e) => e.event === "summary").length, 1)
  return { started, progress, summary }
}

// eslint-disable-next-line no-control-regex
const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")

/** verify's flags through the fault proxy, every HEAD held back `delayMs`, one object at a time. */
const slowVerify = (delayMs: number) =>
  Effect.gen(function*() {
    const proxy = yield* FaultProxy
    yield* proxy.setRules([{ name: "slow", fault: { kind: "slow", delayMs } }])
    return [...(yield* targetVia(proxy.endpoint)), "--concurrency", "1", "--interval", "1"]
  })

const bytesOf = (objects: ReadonlyArray<InsertedObject>) => objects.reduce((s, o) => s + o.size, 0)

describe("verify shows done of the total", () => {
  it.live("the count's connection reset by the network: the count is retried, the total is the real one", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(6, 700)
      const db = yield* TestDatabase
      const proxy = yield* TcpProxy.make({ host: db.host, port: db.port })
      yield* proxy.onStatement({ pattern: /count\(\*\) AS n/, action: "reset", count: 2 })
      const s3 = (yield* target).slice(2)
      const result = yield* runCli(["verify", "--pg-url", proxy.via(db.url), ...s3, "--progress", "json"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(yield* proxy.acted, 2, "both resets landed on the count")
      const { started, summary } = checkEvents(events(result), "verify")
      assert.deepInclude(started, { total: 6, totalBytes: bytesOf(objects) })
      assert.deepInclude(summary, { outcome: "success", done: 6, total: 6, good: 6, bad: 0 })
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("json: the total first, done rising to it, BAD lines as events, a summary with done == total", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(8, 100)
      yield* deleteObject(objects[5]!.sha256!)
      const result = yield* runCli(["verify", ...(yield* slowVerify(300)), "--progress", "json"])
      assert.strictEqual(result.code, 1, result.stderr)
      const all = events(result)
      const { progress, started, summary } = checkEvents(all, "verify")
      assert.deepInclude(started, { total: 8, totalBytes: bytesOf(objects), unit: "objects" })
      assert.isAbove(progress.length, 0, "2.4 s of HEADs: progress events every second")
      assert.isBelow(progress[0]!.done as number, 8)
      assert.deepInclude(all.find((e) => e.event === "bad"), { key: objects[5]!.hash, problem: "missing-object", objectKey: objects[5]!.sha256 })
      assert.deepInclude(summary, {
        outcome: "failed",
        done: 8,
        total: 8,
        percent: 100,
        bytes: bytesOf(objects),
        totalBytes: bytesOf(objects),
        good: 7,
        bad: 1,
        checkpoint: objects[7]!.hash,
        complete: true
      })
      // for people, on stderr: the BAD line and the summary
      assert.match(result.stderr, new RegExp(`BAD ${objects[5]!.hash} `))
      assert.include(result.stderr, "verified 8 migrated object(s)")
    }).pipe(Effect.scoped, Effect.provide(withProxy)))

  it.live("plain: 'N of M objects (P%)' with bytes, rate and ETA every interval, the last one at 100%", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(8, 200)
      const result = yield* runCli(["verify", ...(yield* slowVerify(300)), "--progress", "plain"])
      assert.strictEqual(result.code, 0, result.stderr)
      const lines = result.stderr.split("\n").filter((l) => l.startsWith("verify: ") && l.includes(" of "))
      assert.isAbove(lines.length, 1, result.stderr)
      assert.match(
        lines[0]!,
        /^verify: [1-7] of 8 objects \(\d+\.\d%\), [\d.]+ (B|KiB) of [\d.]+ (B|KiB), [\d.]+\/s, ETA (\d+h \d\dm \d\ds|\?), 0 bad; checkpoint [0-9a-f]{40}$/
      )
      assert.match(lines.at(-1)!, new RegExp(`^verify: 8 of 8 objects \\(100\\.0%\\), .*, in 0h 00m 0\\ds, 0 bad; checkpoint ${objects[7]!.hash}$`))
      assert.include(result.stdout, "verified 8 migrated object(s)")
    }).pipe(Effect.scoped, Effect.provide(withProxy)))

  it.live("tty (forced into a pipe): the bar redrawn in place, ending at 100% and done", () =>
    Effect.gen(function*() {
      yield* migratedObjects(6, 300)
      const result = yield* runCli(["verify", ...(yield* slowVerify(100)), "--progress", "tty"], { env: { NO_COLOR: "1" } })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stderr, "\x1b[2K")
      assert.include(result.stderr, "\x1b[2F", "redrawn over the last frame")
      const text = strip(result.stderr)
      assert.match(text, /verify \[[█░]+\] +\d+\.\d%  \d of 6 objects/)
      assert.match(text, /verify \[█+\] 100\.0%  6 of 6 objects, [\d.]+ (B|KiB) of [\d.]+ (B|KiB)  done\n/)
      assert.include(result.stdout, "verified 6 migrated object(s)")
    }).pipe(Effect.scoped, Effect.provide(withProxy)))

  it.live("a resumed verify (--from) counts only the rows after the checkpoint", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(7, 400)
      const result = yield* runCli(["verify", ...(yield* target), "--from", objects[2]!.hash, "--progress", "json"])
      assert.strictEqual(result.code, 0, result.stderr)
      const left = objects.slice(3)
      const { started, summary } = checkEvents(events(result), "verify")
      assert.deepInclude(started, { total: 4, totalBytes: bytesOf(left) })
      assert.deepInclude(summary, { outcome: "success", done: 4, total: 4, bytes: bytesOf(left), percent: 100 })
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--no-count: the total is ? with no percentage until the run has done everything", () =>
    Effect.gen(function*() {
      yield* migratedObjects(6, 500)
      const args = ["verify", ...(yield* slowVerify(300)), "--no-count"]
      const plain = yield* runCli([...args, "--progress", "plain"])
      assert.strictEqual(plain.code, 0, plain.stderr)
      assert.match(plain.stderr, /\nverify: [1-5] of \? objects, [\d.]+ (B|KiB) of \?, [\d.]+\/s, ETA \?, 0 bad; checkpoint /)
      assert.notMatch(plain.stderr, /verify: [1-5] of \? objects \(/, "no percentage without a total")
      // complete, the total is what was done
      assert.match(plain.stderr, /\nverify: 6 of 6 objects \(100\.0%\)/)
      const json = yield* runCli([...args, "--progress", "json"])
      const { progress, started, summary } = checkEvents(events(json), "verify")
      assert.deepInclude(started, { total: null, totalBytes: null })
      for (const e of progress) assert.deepInclude(e, { total: null, percent: null, etaSeconds: null })
      assert.deepInclude(summary, { done: 6, total: 6, percent: 100 })
    }).pipe(Effect.scoped, Effect.provide(withProxy)))

  it.live("an empty table and one without sha2 yet: 0 of 0, 100%; zero-byte objects: 0 B of 0 B", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const args = ["verify", ...(yield* target), "--progress", "json"]
      const noColumn = yield* runCli(args)
      assert.strictEqual(noColumn.code, 0, noColumn.stderr)
      assert.deepInclude(checkEvents(events(noColumn), "verify").summary, { done: 0, total: 0, percent: 100, outcome: "success" })
      yield* addSha2Column
      const empty = yield* runCli(args)
      const e = checkEvents(events(empty), "verify")
      assert.deepInclude(e.started, { total: 0, totalBytes: 0 })
      assert.deepInclude(e.summary, { done: 0, total: 0, percent: 100, bytes: 0, totalBytes: 0 })
      const plain = yield* runCli(["verify", ...(yield* target), "--progress", "plain"])
      assert.match(plain.stderr, /verify: 0 of 0 objects \(100\.0%\), 0 B of 0 B, 0\.0\/s, in 0h 00m 0\ds, 0 bad; checkpoint \(none yet\)/)

      // three migrated rows of zero bytes (one object for all: same content)
      const s3 = yield* TestS3
      const empty0 = new Uint8Array(0)
      for (let i = 0; i < 3; i++) yield* insertObject({ bytes: empty0, hash: `${i}`.repeat(40), sha2: sha256Hex(empty0) })
      yield* s3.putObject(sha256Hex(empty0), empty0, { metadata: { sha256: sha256Hex(empty0) } })
      const zero = yield* runCli(args)
      assert.strictEqual(zero.code, 0, zero.stderr)
      const z = checkEvents(events(zero), "verify")
      assert.deepInclude(z.started, { total: 3, totalBytes: 0 })
      assert.deepInclude(z.summary, { done: 3, total: 3, percent: 100, bytes: 0, totalBytes: 0 })
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("rows migrated during the run: the counted total is never passed; the summary says what was done", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      // more than one page (1000 rows): the rows added land on the second page, after the count
      yield* migratedObjects(1003, 700, () => 16)
      let stdout = () => ""
      const run = yield* Effect.forkChild(runCli(["verify", ...(yield* slowVerify(2)), "--progress", "json"], {
        onStart: (_, output) => {
          stdout = output.stdout
        }
      }))
      while (!stdout().includes(`"event":"progress"`)) yield* Effect.sleep("50 millis")
      // three rows migrated meanwhile (their objects in S3), with keys after every other (the first page's
      // range was read before they came)
      for (let i = 0; i < 3; i++) {
        const bytes = randomBytes(16, 800 + i)
        yield* s3.putObject(sha256Hex(bytes), bytes, { metadata: { sha256: sha256Hex(bytes) } })
        yield* insertObject({ bytes, hash: `${"f".repeat(39)}${i}`, sha2: sha256Hex(bytes) })
      }
      const result = yield* Fiber.join(run)
      assert.strictEqual(result.code, 0, result.stderr)
      const { started, summary } = checkEvents(events(result), "verify")
      assert.deepInclude(started, { total: 1003 })
      assert.deepInclude(summary, { done: 1006, total: 1006, percent: 100, complete: true })
    }).pipe(Effect.scoped, Effect.provide(withProxy)), 180_000)

  it.live("interrupted (SIGINT): the summary says so, with done below the total; exit 130", () =>
    Effect.gen(function*() {
      yield* migratedObjects(8, 900)
      const result = yield* runCli(["verify", ...(yield* slowVerify(400)), "--progress", "json"], {
        onStart: (child, output) => {
          const timer = setInterval(() => {
            if (output.stdout().includes(`"event":"progress"`)) {
              clearInterval(timer)
              child.kill("SIGINT")
            }
          }, 20)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.strictEqual(result.code, 130, result.stderr)
      const { summary } = checkEvents(events(result), "verify")
      assert.deepInclude(summary, { outcome: "interrupted", total: 8, complete: false })
      assert.isBelow(summary.done as number, 8)
      assert.include(result.stderr, "verify stopped:")
    }).pipe(Effect.scoped, Effect.provide(withProxy)))

  it.live("the table profile: rows counted, bytes unknown without --size-column (each size would be an lo_open)", () =>
    Effect.gen(function*() {
      yield* createDocs(5, 1000, { names: (i) => `doc-${i}`, size: (i) => 100 + i })
      const t = yield* target
      const copy = yield* runCli(["migrate", ...t, ...docsArgs])
      assert.strictEqual(copy.code, 0, copy.stderr)
      const result = yield* runCli(["verify", ...t, ...docsArgs, "--progress", "json"])
      assert.strictEqual(result.code, 0, result.stderr)
      const { started, summary } = checkEvents(events(result), "verify")
      assert.deepInclude(started, { total: 5, totalBytes: null })
      assert.deepInclude(summary, { done: 5, total: 5, percent: 100, bytes: 5 * 100 + 10, totalBytes: 5 * 100 + 10 })
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the relstorage profile: blobs and blob_size counted in blob_state; prune counts those with chunks", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* target
      const profile = ["--profile", "relstorage", "--blob-threshold", "1024"]
      yield* createBlobChunk("history-preserving", { chunkIndex: true })
      yield* insertBlob(1, 1, [randomBytes(10, 1)])
      yield* insertBlob(2, 1, [randomBytes(2000, 2)])
      yield* insertBlob(3, 1, [randomBytes(700, 3), randomBytes(700, 4)])
      const copy = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(copy.code, 0, copy.stderr)
      const verify = yield* runCli(["verify", ...t, ...profile, "--progress", "json"])
      assert.strictEqual(verify.code, 0, verify.stderr)
      const v = checkEvents(events(verify), "verify")
      assert.deepInclude(v.started, { total: 3, totalBytes: 10 + 2000 + 1400 })
      assert.deepInclude(v.summary, { done: 3, total: 3, bytes: 3410, totalBytes: 3410 })
      // blob 2/1 pruned by hand: prune has two blobs with chunks ahead of it
      yield* sql`DELETE FROM blob_chunk WHERE zoid = 2`
      const prune = yield* runCli(["prune", ...t, ...profile, "--yes", "--progress", "json"])
      assert.strictEqual(prune.code, 0, prune.stderr)
      const p = checkEvents(events(prune), "prune")
      assert.deepInclude(p.started, { total: 2, totalBytes: 1410 })
      assert.deepInclude(p.summary, { done: 2, total: 2, released: 2, outcome: "success" })
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("prune shows done of the total", () => {
  it.live("json: rows with a large object counted; refused, kept and not-migrated rows as events; done == total", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(5, 1100)
      yield* deleteObject(objects[0]!.sha256!)
      const fresh = yield* insertObject({ bytes: randomBytes(300, 1199) })
      const sharing = yield* insertObject({ bytes: null, hash: "cd".repeat(20), dataOid: objects[1]!.oid })
      const args = ["prune", ...(yield* target), "--batch-size", "1", "--progress", "json"]
      const dry = yield* runCli(args)
      assert.strictEqual(dry.code, 1, dry.stderr)
      const d = checkEvents(events(dry), "prune")
      assert.deepInclude(d.started, { total: 5, totalBytes: bytesOf(objects) })
      const all = events(dry)
      assert.deepInclude(all.find((e) => e.event === "refused"), { key: objects[0]!.hash, problem: "missing-object" })
      assert.deepInclude(all.find((e) => e.event === "kept"), { oid: objects[1]!.oid, referencedBy: [sharing.hash] })
      assert.sameMembers(all.filter((e) => e.event === "not-migrated").map((e) => e.key), [fresh.hash, sharing.hash])
      assert.deepInclude(d.summary, { outcome: "failed", done: 5, total: 5, percent: 100, dryRun: true, released: 4 })
      assert.deepInclude(d.summary, { bad: 1, notMigrated: 2 })
      assert.isTrue(all.findIndex((e) => e.event === "not-migrated") < all.length - 1, "the summary comes last")
      assert.include(dry.stderr, "dry run (nothing changed; add --yes to prune)")

      const real = yield* runCli([...args.filter((a) => a !== "json" && a !== "--progress"), "--yes", "--progress", "plain"])
      assert.strictEqual(real.code, 1, real.stderr)
      assert.match(real.stderr, /prune: 5 of 5 objects \(100\.0%\), [\d.]+ (B|KiB) of [\d.]+ (B|KiB), [\d.]+\/s, in 0h 00m 0\ds, 4 row\(s\) released, [\d.]+ (B|KiB) freed, 1 refused; checkpoint /)
      assert.include(real.stdout, "pruned: checked 5 migrated row(s)")
      // the second run: only the refused row still has its large object
      const again = yield* runCli(args)
      assert.deepInclude(checkEvents(events(again), "prune").started, { total: 1, totalBytes: objects[0]!.size })
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("plan's sampling shows done of its sample", () => {
  it.live("json: the sample picked is the total, the summary has done == total and the estimate; the plan on stderr", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      for (let i = 0; i < 6; i++) yield* insertObject({ bytes: randomBytes(1000 + i, 1200 + i) })
      yield* insertObject({ bytes: randomBytes(1536 * 1024, 1210) })
      const result = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "4", "--progress", "json"])
      assert.strictEqual(result.code, 0, result.stderr)
      const { started, summary } = checkEvents(events(result), "plan")
      assert.strictEqual(started.total, 4)
      assert.isAtLeast(started.totalBytes as number, 4 * 1000)
      assert.deepInclude(summary, { outcome: "success", done: 4, total: 4, percent: 100, totalBytes: started.totalBytes })
      assert.isAbove(summary.estimatedSeconds as number, 0)
      assert.include(result.stderr, "plan for _nice_binary (read only")
      assert.include(result.stderr, "based on: 4 sampled object(s)")

      const plain = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "3", "--progress", "plain"])
      assert.match(plain.stderr, /plan: 3 of 3 objects \(100\.0%\), [\d.]+ (KiB|MiB) of [\d.]+ (KiB|MiB), [\d.]+\/s, in 0h 00m 0\ds, sampled for the duration estimate/)
      assert.include(plain.stdout, "plan for _nice_binary")
      const tty = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "3", "--progress", "tty"], { env: { NO_COLOR: "1" } })
      assert.match(strip(tty.stderr), /plan \[█+\] 100\.0%  3 of 3 objects/)
      // the 1.5 MiB object does not fit --sample-mib 1: the total is what is read, not what was asked for
      const capped = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "7", "--sample-mib", "1", "--progress", "json"])
      assert.deepInclude(checkEvents(events(capped), "plan").summary, { done: 6, total: 6 })
      // nothing to sample: 0 of 0
      const none = yield* runCli(["plan", ...(yield* pgFlags), "--sample", "0", "--progress", "json"])
      assert.deepInclude(checkEvents(events(none), "plan").summary, { done: 0, total: 0, percent: 100 })
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("migrate --dry-run samples with the same progress", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      for (let i = 0; i < 3; i++) yield* insertObject({ bytes: randomBytes(500, 1300 + i) })
      const result = yield* runCli(["migrate", ...(yield* target), "--dry-run", "--sample", "2", "--progress", "json"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.deepInclude(checkEvents(events(result), "plan").summary, { done: 2, total: 2 })
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("upload-blobs shows done of its manifest", () => {
  it.live("json and plain: lines of the manifest are the total; a rerun settles them all as already done", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 6; i++) objects.push(yield* insertObject({ bytes: randomBytes(700 + i, 1400 + i) }))
      const dir = yield* scopedTempDir("progress-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const t = yield* target
      const stage = yield* runCli(["migrate", ...t, "--deferred-blobs", manifest, "--staging-dir", NodePath.join(dir, "staged")])
      assert.strictEqual(stage.code, 0, stage.stderr)
      const upload = ["upload-blobs", manifest, ...t, "--progress", "json"]
      const first = yield* runCli(upload)
      assert.strictEqual(first.code, 0, first.stderr)
      const f = checkEvents(events(first), "upload-blobs")
      assert.deepInclude(f.started, { unit: "lines", total: 6, totalBytes: bytesOf(objects) })
      assert.deepInclude(f.summary, { outcome: "success", done: 6, total: 6, bytes: bytesOf(objects), uploaded: 6, alreadyDone: 0 })
      assert.include(first.stderr, "uploaded 6 object(s)")

      const again = yield* runCli([...upload.slice(0, -1), "plain"])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.match(
        again.stderr,
        /upload-blobs: 6 of 6 lines \(100\.0%\), [\d.]+ KiB of [\d.]+ KiB, [\d.]+\/s, in 0h 00m 0\ds, 0 uploaded and marked, 6 already done, 0 failed, 0 retries/
      )
      assert.include(again.stdout, "6 line(s) were already done")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
