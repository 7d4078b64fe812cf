// The AWS SDK's own log lines go through the tool's logger (S3Store.sdkLogger), so --log-level governs
// them: the SDK writes `An error was encountered in a non-retryable streaming request.` to the console
// for every failed streamed upload unless it is given a logger. Through the executable against s3rver,
// with streamed PUTs (temp files) that fail once at a proxy and are retried.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, faults } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, freshTempDir } from "./support/Verify.ts"

const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const streamingLine = "An error was encountered in a non-retryable streaming request."

describe("the AWS SDK's log lines", () => {
  it.live("stay out of stderr at the default level, and come as the tool's own Debug and Trace lines when asked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const objects = []
      for (let i = 0; i < 4; i++) objects.push(yield* insertObject({ bytes: randomBytes(4096 + i, 70 + i) }))
      const tmp = yield* freshTempDir
      // --in-mem-max 1: every object is streamed from its temp file; the first 2 PUTs of each run fail
      const args = ["migrate", ...(yield* targetVia(proxy.endpoint)), "--in-mem-max", "1", "--temp-dir", tmp]
      const failTwice = () => proxy.setRules([{ name: "fail", method: "PUT", path: /[0-9a-f]{64}/, count: 2, fault: faults.internalError }])

      yield* failTwice()
      const quiet = yield* runCli(args)
      assert.strictEqual(quiet.code, 0, quiet.stderr)
      assert.strictEqual(yield* proxy.fired("fail"), 2)
      assert.notInclude(quiet.stderr, streamingLine)
      assert.notInclude(quiet.stderr, "AWS SDK")
      assert.notInclude(quiet.stdout, streamingLine)
      yield* assertAllMigrated(objects)

      // new rows, at Debug: the SDK's lines are there, marked as the SDK's, as Debug lines
      for (let i = 0; i < 4; i++) objects.push(yield* insertObject({ bytes: randomBytes(4096 + i, 80 + i) }))
      yield* failTwice()
      const debug = yield* runCli([...args, "--log-level", "debug"])
      assert.strictEqual(debug.code, 0, debug.stderr)
      const sdkLines = debug.stderr.split("\n").filter((l) => l.includes("AWS SDK: "))
      assert.isAtLeast(sdkLines.filter((l) => l.includes(streamingLine)).length, 2, debug.stderr)
      assert.isAtLeast(sdkLines.filter((l) => l.includes("PutObject failed: InternalError: injected by FaultProxy [HTTP 500]")).length, 2)
      for (const l of sdkLines) assert.match(l, /DEBUG/, l)
      yield* assertAllMigrated(objects)
      // no line outside the logger: every streaming line is one of the tool's log lines
      assert.strictEqual(debug.stderr.split("\n").filter((l) => l.includes(streamingLine)).length, sdkLines.filter((l) => l.includes(streamingLine)).length)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("at Trace, each request is one short line (command and status), never its body or metadata", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const secretish = "needle-in-the-metadata"
      yield* insertObject({ bytes: new TextEncoder().encode(`body-${secretish}`), mime: "text/plain" })
      const trace = yield* runCli(["migrate", ...(yield* targetVia(proxy.endpoint)), "--log-level", "trace"])
      assert.strictEqual(trace.code, 0, trace.stderr)
      const sdkLines = trace.stderr.split("\n").filter((l) => l.includes("AWS SDK: "))
      assert.isTrue(sdkLines.some((l) => l.includes("PutObject answered HTTP 200")), trace.stderr)
      assert.notInclude(trace.stderr, secretish)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
