// The live TTY display: the renderer as a pure function, and the executable under a real
// pseudo-terminal (util-linux `script`), redrawing in place on stderr, with and without NO_COLOR.
import { DeleteObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { spawn, spawnSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { colorAllowed, redraw, render, terminal } from "../src/pipeline/ProgressDisplay.ts"
import { resolve } from "../src/cli/ProgressMode.ts"
import { Stats, type StatsSnapshot } from "../src/core/Stats.ts"
import { binPath } from "./support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const start = Date.UTC(2026, 0, 1)
const MiB = 1024 * 1024
const snapshot = (over: Partial<StatsSnapshot> = {}): StatsSnapshot => ({
  at: start,
  startedAt: start,
  processed: { observer: 0, receiver: 0, storer: 0, committer: 0 },
  bytes: { received: 0, stored: 0, committed: 0 },
  failed: 0,
  retries: 0,
  remaining: 1000,
  total: 1200,
  queues: [
    { name: "receive", used: 512, capacity: 1024 },
    { name: "store", used: 0, capacity: 100 },
    { name: "commit", used: 25, capacity: 100 }
  ],
  ...over
})
// eslint-disable-next-line no-control-regex
const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")

describe("ProgressDisplay.render", () => {
  const earlier = snapshot({
    at: start + 10_000,
    processed: { observer: 600, receiver: 400, storer: 300, committer: 250 },
    bytes: { received: 40 * MiB, stored: 30 * MiB, committed: 25 * MiB }
  })
  const current = snapshot({
    at: start + 20_000,
    processed: { observer: 1000, receiver: 800, storer: 600, committer: 500 },
    bytes: { received: 80 * MiB, stored: 60 * MiB, committed: 50 * MiB },
    failed: 2,
    retries: 3
  })

  it("shows the bar, counts, rates over the window, ETA, stages and queues", () => {
    const lines = render({ current, earlier, width: 120, color: false, final: false })
    assert.strictEqual(lines.length, 4)
    // 500 of 1000 committed: half the bar
    assert.match(lines[0]!, /^lo-migrate \[(█+)(░+)\]  50\.0%  500 of 1,000 objects, 50\.00 MiB  ETA 0h 00m 19s$/)
    const [, full, empty] = /\[(█+)(░+)\]/.exec(lines[0]!)!
    assert.strictEqual(full!.length, empty!.length)
    // rate over the window: 250 objects and 25 MiB in 10 s; ETA = (1000 - 500 - 2 failed) / 25 per s
    assert.include(lines[1]!, "25 obj/s, 2.50 MiB/s")
    assert.include(lines[1]!, "elapsed 0h 00m 20s")
    assert.include(lines[1]!, "failed 2")
    assert.include(lines[1]!, "retries 3")
    assert.include(lines[1]!, "table 700 of 1,200 migrated")
    assert.strictEqual(lines[2], "  stages  listed 1,000 · read 800 · stored 600 · committed 500")
    assert.match(lines[3]!, /receive ████░░░░  50%.*store ░░░░░░░░   0%.*commit ██░░░░░░  25%/)
  })

  it("cuts every line to the width, colors only when asked, and says done at the end", () => {
    for (const line of render({ current, earlier, width: 40, color: false, final: false })) {
      assert.isAtMost(line.length, 40)
    }
    const colored = render({ current, earlier, width: 200, color: true, final: true })
    assert.include(colored[0]!, "\x1b[32m█")
    assert.include(colored[1]!, "\x1b[31mfailed 2")
    assert.deepStrictEqual(
      colored.map(strip),
      render({ current, earlier, width: 200, color: false, final: true })
    )
    assert.match(strip(colored[0]!), / done$/)
    // the final frame shows averages since the start: 500 objects in 20 s
    assert.include(strip(colored[1]!), "25 obj/s")
  })

  it("before the totals are known and with nothing done yet", () => {
    const lines = render({ current: snapshot({ remaining: undefined, total: undefined, queues: [] }), width: 100, color: false, final: false })
    assert.strictEqual(lines.length, 3)
    assert.include(lines[0]!, "0 of ? objects")
    assert.include(lines[0]!, "ETA --")
  })

  it("redraw moves up over the previous frame and clears below", () => {
    assert.strictEqual(redraw(0, ["a", "b"]), "\x1b[2Ka\n\x1b[2Kb\n\x1b[J")
    assert.strictEqual(redraw(2, ["c"]), "\x1b[2F\x1b[2Kc\n\x1b[J")
  })

  it.effect("log lines written while the display is up are printed above the next frame", () =>
    Effect.gen(function*() {
      const writes: Array<string> = []
      const direct: Array<string> = []
      const base = { ...globalThis.console, error: (...args: ReadonlyArray<unknown>) => direct.push(args.join(" ")) }
      const t = terminal({ write: (text) => Effect.sync(() => writes.push(text)), columns: () => 100, color: false }, base)
      t.console.error("before the display")
      assert.deepStrictEqual(direct, ["before the display"])
      const display = yield* t.display
      const loop = yield* Effect.forkChild(display.loop)
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(writes.length, 1)
      assert.isTrue(writes[0]!.startsWith("\x1b[?25l"), "first frame hides the cursor")
      t.console.error("WARN", "a row failed")
      assert.deepStrictEqual(direct, ["before the display"], "held while the display is up")
      yield* TestClock.adjust("250 millis")
      assert.strictEqual(writes.length, 2)
      // up over the 3-line frame, clear it, the log line, then the frame again
      assert.isTrue(writes[1]!.startsWith("\x1b[3F\x1b[JWARN a row failed\n\x1b[2Klo-migrate ["), JSON.stringify(writes[1]))
      yield* Fiber.interrupt(loop)
      yield* display.final
      assert.isTrue(writes[2]!.endsWith("\x1b[?25h"), "the final frame shows the cursor")
      t.console.error("after the display")
      assert.deepStrictEqual(direct, ["before the display", "after the display"])
    }).pipe(Effect.provide(Stats.layer)))

  it("NO_COLOR and --progress auto", () => {
    assert.isTrue(colorAllowed({}))
    assert.isTrue(colorAllowed({ NO_COLOR: "" }))
    assert.isFalse(colorAllowed({ NO_COLOR: "1" }))
    assert.strictEqual(resolve("auto", true), "tty")
    assert.strictEqual(resolve("auto", false), "plain")
    assert.strictEqual(resolve("json", true), "json")
  })
})

const hasScript = spawnSync("script", ["--version"]).status === 0
const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** Runs the CLI under a pseudo-terminal; `script` copies the terminal's output into `typescript`. */
const underPty = (args: ReadonlyArray<string>, extraEnv: Record<string, string>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-pty-"))),
    (dir) =>
      Effect.callback<{ code: number | null; output: string }>((resume) => {
        const file = NodePath.join(dir, "typescript")
        const command = [process.execPath, binPath, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")
        // a fresh pty has no size: give it one, as a terminal window would
        const child = spawn("script", ["-qec", `stty cols 120 rows 40; ${command}`, file], {
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", TERM: "xterm", COLUMNS: "120", ...extraEnv },
          stdio: ["ignore", "ignore", "ignore"]
        })
        child.on("close", (code) => resume(Effect.succeed({ code, output: NodeFs.readFileSync(file, "utf8") })))
        return Effect.sync(() => child.kill("SIGKILL"))
      }),
    (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
  )

describe.skipIf(!hasScript)("--progress auto on a terminal", () => {
  it.live("draws the live display in place, in color unless NO_COLOR", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      for (let i = 0; i < 20; i++) yield* insertObject({ bytes: randomBytes(2000 + i, 500 + i) })
      const bad = yield* insertObject({ bytes: null })
      const colored = yield* underPty(["migrate", ...(yield* target)], {})
      assert.strictEqual(colored.code, 1, colored.output)
      // the failure's log line is printed whole (above the display), not overdrawn by it
      assert.match(strip(colored.output), new RegExp(`WARN .*failed ${bad.hash}: null-data: data is NULL`))
      assert.include(colored.output, "\x1b[31mfailed 1")
      assert.include(colored.output, "\x1b[?25l", "cursor hidden while drawing")
      assert.include(colored.output, "\x1b[?25h", "cursor shown again")
      assert.include(colored.output, "\x1b[32m█", "green bar")
      assert.match(strip(colored.output), /lo-migrate \[█+░*\]  95\.2%  20 of 21 objects, .* done/)
      assert.include(strip(colored.output), "committed 20")
      assert.notInclude(colored.output, "Progress Overview:", "no periodic report on a terminal")
      assert.include(colored.output, "migrated 20 object(s)")

      const plain = yield* underPty(["migrate", ...(yield* target)], { NO_COLOR: "1" })
      assert.strictEqual(plain.code, 1, plain.output)
      assert.notInclude(plain.output, "\x1b[32m")
      assert.notInclude(plain.output, "\x1b[31m")
      assert.include(plain.output, "0 of 1 objects")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("verify: its bar with the total, a BAD line (stdout, same terminal) above it, ending at 100% and done", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 12; i++) objects.push(yield* insertObject({ bytes: randomBytes(1000 + i, 700 + i) }))
      const migrated = yield* underPty(["migrate", ...(yield* target)], { NO_COLOR: "1" })
      assert.strictEqual(migrated.code, 0, migrated.output)
      const s3 = yield* TestS3
      yield* s3.use("DeleteObject", (c) => c.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: objects[3]!.sha256! })))
      const verified = yield* underPty(["verify", ...(yield* target), "--concurrency", "1"], { NO_COLOR: "1" })
      assert.strictEqual(verified.code, 1, verified.output)
      const text = strip(verified.output)
      assert.match(text, /verify \[█+\] 100\.0%  12 of 12 objects, [\d.]+ KiB of [\d.]+ KiB  done/)
      // the BAD line whole on its own line, the frame drawn again below it
      assert.match(text, new RegExp(`\\r?\\nBAD ${objects[3]!.hash} \\(oid ${objects[3]!.oid}, object ${objects[3]!.sha256}\\): missing-object: [^\\n]*\\r?\\n`))
      assert.include(verified.output, "\x1b[?25h", "cursor shown again")
      assert.include(text, "verified 12 migrated object(s)")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
