// TaskProgress: the progress of a task with a known (or unknown) total. The numbers and the three forms
// as pure functions (percent, ETA, unknown and stale totals, an empty task), and `make` with captured
// streams: what goes to stdout and stderr in each mode, the last frame or event whatever the outcome.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as TaskProgress from "../src/pipeline/TaskProgress.ts"

const name = { task: "verify", unit: "objects" }
const start = Date.UTC(2026, 0, 1)
const MiB = 1024 * 1024
const at = (seconds: number, state: TaskProgress.TaskState): TaskProgress.Reading => ({ at: start + seconds * 1000, state })
// eslint-disable-next-line no-control-regex
const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")

describe("TaskProgress.numbers", () => {
  it("percent of the total, rate over the window, ETA of what is left at that rate", () => {
    const earlier = at(10, { done: 100, bytes: 1 * MiB, total: 1000, totalBytes: 10 * MiB })
    const current = at(20, { done: 600, bytes: 6 * MiB, total: 1000, totalBytes: 10 * MiB })
    const n = TaskProgress.numbers(current, start, earlier)
    assert.strictEqual(n.percent, 60)
    assert.strictEqual(n.objectsPerSecond, 50)
    assert.strictEqual(n.bytesPerSecond, 0.5 * MiB)
    // 400 left at 50/s
    assert.strictEqual(n.etaSeconds, 8)
    assert.strictEqual(n.elapsedSeconds, 20)
    // without an earlier reading: since the start (600 in 20 s)
    assert.strictEqual(TaskProgress.numbers(current, start).objectsPerSecond, 30)
  })

  it("an unknown total has no percent and no ETA; nothing done yet has no ETA either", () => {
    const unknown = TaskProgress.numbers(at(5, { done: 10, total: undefined }), start)
    assert.isUndefined(unknown.total)
    assert.isUndefined(unknown.percent)
    assert.isUndefined(unknown.etaSeconds)
    const idle = TaskProgress.numbers(at(5, { done: 0, total: 10 }), start)
    assert.strictEqual(idle.percent, 0)
    assert.isUndefined(idle.etaSeconds)
  })

  it("a total the task has gone past is stale: unknown, never above 100%; a complete task has done its total", () => {
    const past = TaskProgress.numbers(at(5, { done: 12, bytes: 5, total: 10, totalBytes: 100 }), start)
    assert.isUndefined(past.total)
    assert.isUndefined(past.percent)
    assert.strictEqual(past.totalBytes, 100)
    const bytesPast = TaskProgress.numbers(at(5, { done: 5, bytes: 120, total: 10, totalBytes: 100 }), start)
    assert.isUndefined(bytesPast.totalBytes)
    assert.strictEqual(bytesPast.percent, 50)
    // rows added meanwhile, or deleted: once complete, the total is what was done
    for (const total of [10, 15, undefined]) {
      const complete = TaskProgress.numbers(at(5, { done: 12, bytes: 7, total, totalBytes: 3, complete: true }), start)
      assert.strictEqual(complete.total, 12)
      assert.strictEqual(complete.totalBytes, 7)
      assert.strictEqual(complete.percent, 100)
      assert.strictEqual(complete.etaSeconds, 0)
    }
  })

  it("an empty task (total 0) is 100% done at once", () => {
    const n = TaskProgress.numbers(at(0, { done: 0, bytes: 0, total: 0, totalBytes: 0 }), start)
    assert.strictEqual(n.percent, 100)
    assert.strictEqual(n.etaSeconds, 0)
  })
})

describe("TaskProgress forms", () => {
  const earlier = at(10, { done: 1000, bytes: 2 * MiB, total: 5000, totalBytes: 10 * MiB })
  const current = at(20, {
    done: 1234,
    bytes: Math.round(3.4 * MiB),
    total: 5000,
    totalBytes: Math.round(13.1 * MiB),
    failed: 0,
    detail: "0 bad; checkpoint abc"
  })

  it("plain: done of total with percent, bytes of total, rate, ETA and the task's words", () => {
    assert.strictEqual(
      TaskProgress.plainLine(name, current, start, earlier),
      // 234 in 10 s = 23.4/s; 3766 left: 160.9 s
      "verify: 1,234 of 5,000 objects (24.7%), 3.40 MiB of 13.10 MiB, 23.4/s, ETA 0h 02m 40s, 0 bad; checkpoint abc"
    )
    assert.strictEqual(
      TaskProgress.plainLine(name, at(20, { done: 7, total: undefined }), start),
      "verify: 7 of ? objects, 0.3/s, ETA ?"
    )
    // the last line: how long it took; a task without bytes shows none
    assert.strictEqual(
      TaskProgress.plainLine({ task: "upload-blobs", unit: "lines" }, at(65, { done: 3, total: 3, complete: true }), start, undefined, true),
      "upload-blobs: 3 of 3 lines (100.0%), 0.0/s, in 0h 01m 05s"
    )
  })

  it("tty: a bar as full as the percent, cut to the width, colored only when asked, done at the end", () => {
    const [head, rates] = TaskProgress.ttyLines(name, current, start, earlier, { width: 120, color: false, final: false })
    assert.match(head!, /^verify \[(█+)(░+)\]  24\.7%  1,234 of 5,000 objects, 3\.40 MiB of 13\.10 MiB  ETA 0h 02m 40s$/)
    const [, full, empty] = /\[(█+)(░+)\]/.exec(head!)!
    assert.strictEqual(full!.length + empty!.length, 40)
    assert.strictEqual(full!.length, Math.round(0.2468 * 40))
    assert.include(rates!, "23 objects/s, 143.36 KiB/s")
    assert.include(rates!, "elapsed 0h 00m 20s")
    assert.include(rates!, "0 bad; checkpoint abc")
    for (const line of TaskProgress.ttyLines(name, current, start, earlier, { width: 30, color: false, final: false })) {
      assert.isAtMost(line.length, 30)
    }
    const colored = TaskProgress.ttyLines(name, current, start, earlier, { width: 120, color: true, final: false })
    assert.include(colored[0]!, "\x1b[32m█")
    assert.deepStrictEqual(colored.map(strip), TaskProgress.ttyLines(name, current, start, earlier, { width: 120, color: false, final: false }))

    const unknown = TaskProgress.ttyLines(name, at(3, { done: 5, total: undefined }), start, undefined, { width: 100, color: false, final: false })
    assert.match(unknown[0]!, /^verify \[░+\]     \?%  5 of \? objects  ETA --$/)
    const done = TaskProgress.ttyLines(name, at(3, { done: 5, total: 9, complete: true }), start, undefined, { width: 100, color: false, final: true })
    assert.match(done[0]!, /^verify \[█+\] 100\.0%  5 of 5 objects  done$/)
    const stopped = TaskProgress.ttyLines(name, at(3, { done: 5, total: 9 }), start, undefined, { width: 100, color: false, final: true })
    assert.match(stopped[0]!, / 55\.6%  5 of 9 objects  stopped$/)
  })

  it("json: done, total, percent and etaSeconds, null where unknown, the task's fields, the outcome last", () => {
    const event = TaskProgress.jsonEvent("progress", name, { ...current, state: { ...current.state, fields: { bad: 0 } } }, start, earlier)
    assert.deepInclude(event, {
      event: "progress",
      task: "verify",
      unit: "objects",
      done: 1234,
      total: 5000,
      percent: 24.68,
      etaSeconds: 161,
      bytes: Math.round(3.4 * MiB),
      totalBytes: Math.round(13.1 * MiB),
      bad: 0,
      elapsedMs: 20_000
    })
    assert.deepInclude(TaskProgress.jsonEvent("progress", name, at(1, { done: 2, total: undefined }), start), {
      total: null,
      percent: null,
      etaSeconds: null
    })
    assert.notProperty(TaskProgress.jsonEvent("progress", name, at(1, { done: 2, total: 3 }), start), "bytes")
    const summary = TaskProgress.jsonEvent("summary", name, at(2, { done: 4, total: 3, complete: true }), start, undefined, { outcome: "success" })
    assert.deepInclude(summary, { event: "summary", outcome: "success", done: 4, total: 4, percent: 100, etaSeconds: null })
  })
})

/** A task on captured streams. */
const captured = (mode: TaskProgress.Mode, stdoutIsTty = false) => {
  // `terminal`: both streams in the order written, as one terminal shows them
  const out = { stdout: "", stderr: "", terminal: "" }
  const task = TaskProgress.make({
    ...name,
    mode,
    interval: "50 millis",
    redraw: "20 millis",
    io: {
      stdout: (text) => Effect.sync(() => void ((out.stdout += text), (out.terminal += text))),
      stderr: (text) => Effect.sync(() => void ((out.stderr += text), (out.terminal += text))),
      stdoutIsTty,
      columns: () => 100,
      color: false
    }
  })
  return { out, task }
}

/** A task of `total` steps of 10 bytes, one every 10 ms, with a bad one in the middle. */
const work = (total: number, task: TaskProgress.Task) => {
  const state = { done: 0, bytes: 0, bad: 0, complete: false }
  const read = Effect.sync((): TaskProgress.TaskState => ({
    done: state.done,
    bytes: state.bytes,
    total,
    totalBytes: total * 10,
    complete: state.complete,
    failed: state.bad,
    detail: `${state.bad} bad`,
    fields: { bad: state.bad }
  }))
  const steps = Effect.gen(function*() {
    for (let i = 0; i < total; i++) {
      yield* Effect.sleep("10 millis")
      state.done++
      state.bytes += 10
      if (i === Math.floor(total / 2)) {
        state.bad++
        yield* task.out(`BAD ${i}`, { event: "bad", key: String(i) })
      }
    }
    state.complete = true
  })
  return task.watch(read, steps)
}

describe("TaskProgress.make", () => {
  it.live("json: started with the total, progress events, bad events, a summary with done == total; people's lines on stderr", () =>
    Effect.gen(function*() {
      const { out, task } = captured("json")
      yield* work(20, task)
      yield* task.out("verified 20")
      const events = out.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.deepInclude(events[0], { event: "started", task: "verify", total: 20, totalBytes: 200 })
      const progress = events.filter((e) => e.event === "progress")
      assert.isAbove(progress.length, 0)
      for (const e of progress) assert.strictEqual(e.total, 20)
      const done = progress.map((e) => e.done as number)
      assert.deepStrictEqual(done, [...done].sort((a, b) => a - b))
      assert.deepInclude(events.find((e) => e.event === "bad"), { task: "verify", key: "10" })
      const summary = events.at(-1)!
      assert.deepInclude(summary, { event: "summary", outcome: "failed", done: 20, total: 20, percent: 100, bytes: 200, totalBytes: 200, bad: 1 })
      assert.strictEqual(out.stderr, "BAD 10\nverified 20\n")
    }))

  it.live("json: a failed or interrupted task still ends with its summary, saying so", () =>
    Effect.gen(function*() {
      const failing = captured("json")
      const exit = yield* Effect.exit(failing.task.watch(
        Effect.succeed({ done: 1, total: 3 }),
        Effect.andThen(Effect.sleep("30 millis"), Effect.fail(new Error("S3 is gone")))
      ))
      assert.strictEqual(exit._tag, "Failure")
      assert.deepInclude(JSON.parse(failing.out.stdout.trimEnd().split("\n").at(-1)!), {
        event: "summary",
        outcome: "error",
        error: "S3 is gone",
        done: 1,
        total: 3
      })
      const stopped = captured("json")
      const fiber = yield* Effect.forkChild(stopped.task.watch(Effect.succeed({ done: 2, total: 3 }), Effect.never))
      yield* Effect.sleep("30 millis")
      yield* Fiber.interrupt(fiber)
      assert.deepInclude(JSON.parse(stopped.out.stdout.trimEnd().split("\n").at(-1)!), { outcome: "interrupted", done: 2, total: 3 })
    }))

  it.live("plain: a line every interval and a last one, N of M with a percentage; results on stdout", () =>
    Effect.gen(function*() {
      const { out, task } = captured("plain")
      yield* work(20, task)
      const lines = out.stderr.trimEnd().split("\n")
      assert.isAbove(lines.length, 1)
      for (const line of lines) assert.match(line, /^verify: \d+ of 20 objects \(\d+\.\d%\), \d+ B of 200 B, [\d.]+\/s, /)
      assert.match(lines.at(-1)!, /^verify: 20 of 20 objects \(100\.0%\), 200 B of 200 B, [\d.]+\/s, in 0h 00m 0\ds, 1 bad$/)
      assert.strictEqual(out.stdout, "BAD 10\n")
    }))

  it.live("tty: the bar redrawn in place, ending at 100%; a line for stdout on the same terminal goes above it", () =>
    Effect.gen(function*() {
      const { out, task } = captured("tty", true)
      yield* work(20, task)
      const frames = strip(out.stderr)
      assert.include(out.stderr, "\x1b[2K", "lines are cleared before they are drawn")
      assert.include(out.stderr, "\x1b[2F", "the cursor goes back up over the two lines of the last frame")
      assert.match(frames, /verify \[[█░]+\]\s+\d+\.\d%  \d+ of 20 objects/)
      assert.match(frames, /verify \[█+\] 100\.0%  20 of 20 objects, 200 B of 200 B  done\n/)
      assert.isTrue(out.stderr.endsWith("\x1b[?25h"), "the cursor is shown again at the end")
      assert.strictEqual(out.stdout, "BAD 10\n")
      // the frame is taken away, the line written where it was, and the frame drawn again below it
      assert.match(out.terminal, /\x1b\[2F\x1b\[JBAD 10\n\x1b\[2Kverify \[/)
    }))

  it.live("tty: with stdout not on the terminal, its lines go straight to it", () =>
    Effect.gen(function*() {
      const { out, task } = captured("tty", false)
      yield* work(6, task)
      assert.strictEqual(out.stdout, "BAD 3\n")
      assert.notMatch(out.terminal, /\x1b\[2F\x1b\[JBAD/, "the frame is not taken away for it")
    }))
})
