// Signals: the first SIGINT/SIGTERM stops gracefully (no new objects, in-flight ones finish and are
// committed, final report, exit 130); a second one stops at once and aborts the multipart upload in
// flight. And one run at a time: a second run on the same table is refused with exit 2.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, freshTempDir } from "./support/Verify.ts"

const MiB = 1024 * 1024
const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

/** The CLI pointed at this test's database, and at S3 through the proxy. */
const viaProxy = Effect.flatMap(FaultProxy, (proxy) => targetVia(proxy.endpoint))

const objects = /\/[0-9a-f]{64}(\?|$)/

/** Polls `ready` every 50 ms and runs `then` once, the first time it holds. */
const when = (ready: () => boolean, then: () => void) => {
  const timer = setInterval(() => {
    if (ready()) {
      clearInterval(timer)
      then()
    }
  }, 50)
  return () => clearInterval(timer)
}

describe("graceful stop", () => {
  it.live("the first SIGINT finishes what is in flight, commits it, prints the report, exits 130; a rerun finishes", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      const inserted: Array<InsertedObject> = []
      for (let i = 0; i < 200; i++) inserted.push(yield* insertObject({ bytes: randomBytes(2048 + i, 500 + i) }))
      // every object upload takes 100 ms: the run lasts long enough to be stopped in the middle
      yield* proxy.setRules([{ name: "slow", path: objects, fault: { kind: "slow", delayMs: 100 } }])
      const tmp = yield* freshTempDir
      const args = ["migrate", ...(yield* viaProxy), "--in-mem-max", "1", "--temp-dir", tmp, "--commit-chunk", "5", "--storer-threads", "2"]
      const stopped = yield* runCli(args, {
        onStart: (child, output) => {
          const cancel = when(() => output.stderr().includes("row(s) to migrate"), () => {
            setTimeout(() => child.kill("SIGINT"), 600)
          })
          child.on("close", cancel)
        }
      })
      assert.strictEqual(stopped.code, 130, stopped.stderr)
      assert.include(stopped.stderr, "SIGINT received")
      assert.include(stopped.stderr, "(final stats)")
      assert.match(stopped.stderr, /stopped on request after migrating \d+ object\(s\)/)
      assert.match(stopped.stdout, /migrated \d+ object\(s\)/)
      const marked = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.isAbove(marked, 0)
      assert.isBelow(marked, 200)
      assert.include(stopped.stdout, `migrated ${marked} object(s)`, "what was stored was committed")
      yield* assertMarkedRowsBacked
      assert.deepStrictEqual(NodeFs.readdirSync(tmp), [], "no temp file left")

      yield* proxy.setRules([])
      const rerun = yield* runCli(args)
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a second signal stops at once and aborts the multipart upload in flight", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      yield* insertObject({ bytes: randomBytes(11 * MiB, 77) })
      // parts hang for a long time: only the second signal can end the run quickly
      yield* proxy.setRules([{ name: "stuck", method: "PUT", path: /partNumber=/, fault: { kind: "slow", delayMs: 60_000 } }])
      const log = () => Effect.runSync(proxy.log)
      const started = Date.now()
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--upload-chunk-size", "5120"], {
        onStart: (child) => {
          const cancel = when(() => log().some((r) => r.fault === "stuck"), () => {
            child.kill("SIGTERM")
            setTimeout(() => child.kill("SIGTERM"), 500)
          })
          child.on("close", cancel)
        }
      })
      assert.strictEqual(result.code, 130, result.stderr)
      assert.isBelow(Date.now() - started, 55_000, "did not wait for the stuck parts")
      assert.isTrue(
        log().some((r) => r.method === "DELETE" && /uploadId=/.test(r.path)),
        "AbortMultipartUpload was sent"
      )
      assert.deepStrictEqual((yield* readRows).filter((r) => r.sha2 !== null), [])
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [], "no object, no probe left")
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("one run at a time", () => {
  it.live("a second run on the same table is refused with exit 2 while the first goes on", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const proxy = yield* FaultProxy
      const inserted: Array<InsertedObject> = []
      // 100 uploads of 100 ms each, one at a time: the first run outlasts the second's grace (5 s, in
      // which a lock just freed by a killed run would be taken)
      for (let i = 0; i < 100; i++) inserted.push(yield* insertObject({ bytes: randomBytes(1000 + i, 900 + i) }))
      yield* proxy.setRules([{ name: "slow", path: objects, fault: { kind: "slow", delayMs: 100 } }])
      const args = ["migrate", ...(yield* viaProxy), "--storer-threads", "1", "--commit-chunk", "2"]
      let second: Promise<{ code: number | null; stderr: string }> | undefined
      const first = yield* runCli(args, {
        onStart: (_child, output) => {
          when(() => output.stderr().includes("row(s) to migrate"), () => {
            second = Effect.runPromise(runCli(args))
          })
        }
      })
      assert.strictEqual(first.code, 0, first.stderr)
      assert.isDefined(second, "the second run was started during the first")
      const refused = yield* Effect.promise(() => second!)
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, "another lo-migrate run is working on _nice_binary")
      // who holds it, and what to do when it hangs
      assert.match(refused.stderr, /held by pid (\d+) \(lo-migrate[^)]*\)\n  help: wait for that run to finish .*SELECT pg_terminate_backend\(\1\);/)
      yield* assertAllMigrated(inserted)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
