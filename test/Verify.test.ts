// `lo-migrate verify` and the verification `migrate --finalize` runs first, through the executable:
// every kind of bad object is named by key and row, at the level that can see it; --from resumes;
// --report writes JSON; exit 0 only when all are good.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, faults } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { deleteObject, migratedObjects } from "./support/Verify.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

const reportPath = Effect.acquireRelease(
  Effect.sync(() => NodePath.join(NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-report-")), "report.json")),
  (path) => Effect.sync(() => NodeFs.rmSync(NodePath.dirname(path), { recursive: true, force: true }))
)

const badLine = (o: InsertedObject, problem: string) => new RegExp(`BAD ${o.hash} \\(oid ${o.oid}, object ${o.sha256}\\): ${problem}:`)

describe("lo-migrate verify", () => {
  it.live("passes a good migration, then names each bad object at the level that sees it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const objects = yield* migratedObjects(7, 200)
      const args = ["verify", ...(yield* target), "--concurrency", "3"]

      const clean = yield* runCli(args)
      assert.strictEqual(clean.code, 0, clean.stderr)
      const totalBytes = objects.reduce((s, o) => s + o.size, 0)
      assert.include(clean.stdout, `verified 7 migrated object(s)`)
      assert.include(clean.stdout, `(${totalBytes} bytes)`)
      assert.include(clean.stdout, "7 good, 0 bad")
      assert.include(clean.stdout, `checkpoint ${objects[6]!.hash}`)

      const [missing, resized, relabelled, corrupted, sourceChanged] = objects
      yield* deleteObject(missing!.sha256!)
      yield* sql`UPDATE _nice_binary SET size = size + 1 WHERE hash = ${resized!.hash}`
      yield* s3.putObject(relabelled!.sha256!, relabelled!.bytes!, { metadata: { sha256: "0".repeat(64) } })
      const flipped = Uint8Array.from(corrupted!.bytes!, (b, i) => (i === 0 ? b ^ 0xff : b))
      yield* s3.putObject(corrupted!.sha256!, flipped, { metadata: { sha256: corrupted!.sha256! } })
      const otherBytes = Uint8Array.from(sourceChanged!.bytes!, (b) => b ^ 0x55)
      yield* sql`SELECT lo_put(${sourceChanged!.oid}, 0, ${otherBytes})`

      const report = yield* reportPath
      const head = yield* runCli([...args, "--report", report])
      assert.strictEqual(head.code, 1, head.stderr)
      assert.match(head.stdout, badLine(missing!, "missing-object"))
      assert.match(head.stdout, badLine(resized!, "size-mismatch"))
      assert.match(head.stdout, badLine(relabelled!, "sha256-metadata-mismatch"))
      assert.notInclude(head.stdout, corrupted!.hash, "HEAD cannot see changed bytes")
      assert.include(head.stdout, "4 good, 3 bad")
      assert.include(head.stderr, "3 migrated object(s) failed verification")
      const json = JSON.parse(NodeFs.readFileSync(report, "utf8"))
      assert.strictEqual(json.level, "head")
      assert.strictEqual(json.checked, 7)
      assert.strictEqual(json.bad, 3)
      assert.isTrue(json.complete)
      assert.strictEqual(json.checkpoint, objects[6]!.hash)
      assert.deepStrictEqual(
        json.badObjects.map((b: { key: string; problem: string }) => `${b.key} ${b.problem}`).sort(),
        [`${missing!.hash} missing-object`, `${resized!.hash} size-mismatch`, `${relabelled!.hash} sha256-metadata-mismatch`].sort()
      )
      assert.strictEqual(json.badObjects.find((b: { key: string }) => b.key === missing!.hash).objectKey, missing!.sha256)

      const deep = yield* runCli([...args, "--deep"])
      assert.strictEqual(deep.code, 1, deep.stderr)
      assert.match(deep.stdout, badLine(corrupted!, "content-mismatch"))
      assert.notInclude(deep.stdout, sourceChanged!.hash, "--deep does not read the source")
      assert.include(deep.stdout, "3 good, 4 bad")

      const source = yield* runCli([...args, "--against-source"])
      assert.strictEqual(source.code, 1, source.stderr)
      assert.match(source.stdout, badLine(sourceChanged!, "source-mismatch"))
      assert.include(source.stdout, "2 good, 5 bad")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--from resumes after a checkpoint; bad flags exit 2", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(5, 300)
      const args = ["verify", ...(yield* target)]
      yield* deleteObject(objects[1]!.sha256!)
      const resumed = yield* runCli([...args, "--from", objects[1]!.hash])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, "verified 3 migrated object(s)")
      assert.include(resumed.stdout, `checkpoint ${objects[4]!.hash}`)
      const earlier = yield* runCli([...args, "--from", objects[0]!.hash])
      assert.strictEqual(earlier.code, 1)
      assert.include(earlier.stdout, "verified 4 migrated object(s)")

      const zero = yield* runCli([...args, "--concurrency", "0"])
      assert.strictEqual(zero.code, 2, zero.stderr)
      assert.include(zero.stderr, "invalid setting --concurrency: 0 is below the minimum of 1")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("prints progress with the checkpoint; a run that fails keeps its checkpoint and resumes from it", () =>
    Effect.gen(function*() {
      const objects = yield* migratedObjects(6, 400)
      const proxy = yield* FaultProxy
      const viaProxy = [...(yield* target)]
      viaProxy[viaProxy.indexOf("--s3-url") + 1] = proxy.endpoint
      const args = ["verify", ...viaProxy, "--concurrency", "1", "--retries", "1"]

      // every HEAD waits 600 ms: six take over 3.6 s, so 1 s progress lines must appear
      yield* proxy.setRules([{ name: "slow", fault: { kind: "slow", delayMs: 600 } }])
      const slow = yield* runCli([...args, "--interval", "1"])
      assert.strictEqual(slow.code, 0, slow.stderr)
      assert.match(
        slow.stderr,
        /verify: \d of 6 objects \(\d+\.\d%\), [\d.]+ (B|KiB) of [\d.]+ KiB, [\d.]+\/s, ETA .*, 0 bad; checkpoint [0-9a-f]{40}/
      )

      // Ctrl-C after the first progress line: exit 130, the report says where to resume
      const interruptedReport = yield* reportPath
      const interrupted = yield* runCli([...args, "--interval", "1", "--report", interruptedReport], {
        onStart: (child, output) => {
          const timer = setInterval(() => {
            if (/verify: [1-9]\d* of 6 objects.*checkpoint [0-9a-f]{40}/.test(output.stderr())) {
              clearInterval(timer)
              child.kill("SIGINT")
            }
          }, 50)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.strictEqual(interrupted.code, 130, interrupted.stderr)
      assert.match(interrupted.stderr, /verify stopped: \d+ checked of 6, 0 bad; checkpoint [0-9a-f]{40}; resume with --from/)
      const partial = JSON.parse(NodeFs.readFileSync(interruptedReport, "utf8"))
      assert.isFalse(partial.complete)
      assert.isBelow(partial.checked, 6)

      // S3 breaks after three HEADs: the run stops with exit 1, the report keeps the checkpoint
      const before = (yield* proxy.log).length
      yield* proxy.setRules([{ afterRequests: before + 3, fault: faults.slowDown }])
      const report = yield* reportPath
      const broken = yield* runCli([...args, "--report", report])
      assert.strictEqual(broken.code, 1, broken.stderr)
      assert.include(broken.stderr, `verify stopped: 3 checked of 6`)
      assert.include(broken.stderr, `checkpoint ${objects[2]!.hash}; resume with --from <checkpoint>`)
      const json = JSON.parse(NodeFs.readFileSync(report, "utf8"))
      assert.isFalse(json.complete)
      assert.strictEqual(json.checkpoint, objects[2]!.hash)

      yield* proxy.setRules([])
      const resumed = yield* runCli([...args, "--from", json.checkpoint])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, "verified 3 migrated object(s)")
    }).pipe(Effect.scoped, Effect.provide(Layer.provideMerge(FaultProxy.layer, env))))
})

describe("lo-migrate verify --against-source on a large object", () => {
  it.live("streams a multipart object and a large object read in chunks, and finds one changed byte", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const big = yield* insertObject({ bytes: randomBytes(12 * 1024 * 1024 + 3, 900) })
      const migrated = yield* runCli(["migrate", ...(yield* target), "--upload-chunk-size", "5120"])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      const args = ["verify", ...(yield* target), "--against-source"]
      const good = yield* runCli(args)
      assert.strictEqual(good.code, 0, good.stderr)
      assert.include(good.stdout, `verified 1 migrated object(s), 12.00 MiB (${big.size} bytes)`)
      // one byte past the first 8 MiB read chunk changes in the source
      yield* sql`SELECT lo_put(${big.oid}, ${9 * 1024 * 1024}, ${Uint8Array.of(big.bytes![9 * 1024 * 1024]! ^ 1)})`
      const changed = yield* runCli(args)
      assert.strictEqual(changed.code, 1, changed.stderr)
      assert.match(changed.stdout, badLine(big, "source-mismatch"))
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("lo-migrate migrate --finalize", () => {
  it.live("is refused while a migrated object fails verification", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const objects = yield* migratedObjects(3, 500)
      yield* deleteObject(objects[2]!.sha256!)
      const result = yield* runCli(["migrate", ...(yield* target), "--finalize"])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, badLine(objects[2]!, "missing-object"))
      assert.include(result.stderr, "1 migrated object(s) failed verification: --finalize refused")
      const [column] = yield* sql<{ attnotnull: boolean }>`
        SELECT attnotnull FROM pg_attribute WHERE attrelid = '_nice_binary'::regclass AND attname = 'sha2'`
      assert.isFalse(column!.attnotnull)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
