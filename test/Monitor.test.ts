import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import {
  formatBytes,
  formatDuration,
  formatFixed,
  formatLocalTime,
  formatProgressLine,
  formatQueueLine,
  formatReport,
  formatSigned,
  formatThreadLine,
  makeMonitor,
  progressOf,
  reportEvery,
  toFixedHalfEven
} from "../src/pipeline/Monitor.js"
import { Stats, type StatsSnapshot } from "../src/core/Stats.js"

/** A fixed formatter so the tests don't depend on the machine's time zone. */
const utc = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace("T", " ")

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const start = Date.UTC(2017, 2, 10, 10, 0, 0)

const snapshot = (over: Partial<StatsSnapshot> = {}): StatsSnapshot => ({
  at: start,
  startedAt: start,
  processed: { observer: 0, receiver: 0, storer: 0, committer: 0 },
  bytes: { received: 0, stored: 0, committed: 0 },
  failed: 0,
  retries: 0,
  remaining: undefined,
  total: undefined,
  queues: [],
  ...over
})

/** The report's lines; asserts that the text ends with a newline like the original's println!s. */
const linesOf = (text: string): Array<string> => {
  assert.isTrue(text.endsWith("\n"), "report ends with a newline")
  return text.slice(0, -1).split("\n")
}

const assertLines = (actual: ReadonlyArray<string>, expected: ReadonlyArray<string>) => {
  for (let i = 0; i < Math.max(actual.length, expected.length); i++) {
    assert.strictEqual(actual[i], expected[i], `line ${i + 1}`)
  }
}

// 1940.5 s after the start; the previous report was 10 s earlier
const current = snapshot({
  at: start + 1_940_500,
  processed: { observer: 30000, receiver: 20000, storer: 12000, committer: 10000 },
  bytes: { received: 1.5 * GiB, stored: 1288490188, committed: GiB },
  remaining: 30000,
  total: 80000,
  queues: [
    { name: "receive", used: 8192, capacity: 8192 },
    { name: "store", used: 100, capacity: 1024 },
    { name: "commit", used: 32, capacity: 8192 }
  ]
})
const previous = snapshot({
  at: start + 1_930_500,
  processed: { observer: 21073, receiver: 19000, storer: 11500, committer: 9700 },
  bytes: { received: 1.5 * GiB - 125 * MiB, stored: 1288490188 - 50 * MiB, committed: GiB - 30 * MiB },
  remaining: 30000,
  total: 80000,
  queues: [
    { name: "receive", used: 3957, capacity: 8192 },
    { name: "store", used: 112, capacity: 1024 },
    { name: "commit", used: 32, capacity: 8192 }
  ]
})

describe("formatReport", () => {
  it("formats a whole report exactly like the original, our sections after it", () => {
    const text = formatReport({ previous, current, intervalSeconds: 10, final: false, formatTime: utc })
    assertLines(linesOf(text), [
      "*******************************************************************",
      "    Status at 2017-03-10 10:32:20 (updated every: 10s)",
      "",
      "Progress Overview:",
      "    75.00%, 60000 of 80000 object have been migrated, ETA: 2017-03-10 11:37:00 (1h 04m 40s)",
      "",
      "Processed Objects by Thread Groups:",
      "    observer thread   - processed:   30000, current speed:   892.7 Lo/s, average speed:    15.5 Lo/s",
      "    receiver threads  - processed:   20000, current speed:   100.0 Lo/s, average speed:    10.3 Lo/s",
      "    storer threads    - processed:   12000, current speed:    50.0 Lo/s, average speed:     6.2 Lo/s",
      "    committer threads - processed:   10000, current speed:    30.0 Lo/s, average speed:     5.2 Lo/s",
      "",
      "Queue Usage:",
      "    receive queue     - used   8192 of   8192, 100.00% full, changed by:  +4235",
      "    store queue       - used    100 of   1024,   9.77% full, changed by:    -12",
      "    commit queue      - used     32 of   8192,   0.39% full, changed by:     +0",
      "",
      "Data Volume:",
      "    received          - volume:    1.50 GiB, current speed:   12.50 MiB/s, average speed:    0.79 MiB/s (1610612736 bytes)",
      "    stored            - volume:    1.20 GiB, current speed:    5.00 MiB/s, average speed:    0.63 MiB/s (1288490188 bytes)",
      "    committed         - volume:    1.00 GiB, current speed:    3.00 MiB/s, average speed:    0.53 MiB/s (1073741824 bytes)",
      ""
    ])
    assert.strictEqual("*".repeat(67), linesOf(text)[0])
  })

  it("the final report says (final stats) instead of the interval", () => {
    const lines = linesOf(formatReport({ previous, current, intervalSeconds: 10, final: true, formatTime: utc }))
    assert.strictEqual(lines[1], "    Status at 2017-03-10 10:32:20 (final stats)")
  })

  it("FAILED OBJECTS block only when failures > 0, after an extra blank line", () => {
    const none = linesOf(formatReport({ previous, current, intervalSeconds: 10, final: false, formatTime: utc }))
    assert.isFalse(none.some((l) => l.includes("FAILED")))
    const failing = linesOf(
      formatReport({ previous, current: { ...current, failed: 3 }, intervalSeconds: 10, final: false, formatTime: utc })
    )
    assertLines(failing.slice(1, 6), [
      "    Status at 2017-03-10 10:32:20 (updated every: 10s)",
      "",
      "",
      "FAILED OBJECTS: 3",
      "Progress Overview:"
    ])
  })

  it("retries line only when retries > 0, after the original's sections", () => {
    const none = linesOf(formatReport({ previous, current, intervalSeconds: 10, final: false, formatTime: utc }))
    assert.isFalse(none.some((l) => l.includes("Retried")))
    const some = linesOf(
      formatReport({ previous, current: { ...current, retries: 7 }, intervalSeconds: 10, final: false, formatTime: utc })
    )
    assertLines(some.slice(-2), ["Retried Calls: 7", ""])
    assertLines(some.slice(0, none.length), none)
  })

  it("speeds come from the previous snapshot; the first report measures since the start", () => {
    const observerLine = (prev: StatsSnapshot | undefined) =>
      linesOf(formatReport({ previous: prev, current, intervalSeconds: 10, final: false, formatTime: utc }))[7]
    assert.strictEqual(
      observerLine(previous),
      "    observer thread   - processed:   30000, current speed:   892.7 Lo/s, average speed:    15.5 Lo/s"
    )
    assert.strictEqual(
      observerLine(undefined),
      "    observer thread   - processed:   30000, current speed:    15.5 Lo/s, average speed:    15.5 Lo/s"
    )
    // first report: queue changes are counted from 0
    const first = linesOf(formatReport({ previous: undefined, current, intervalSeconds: 10, final: false, formatTime: utc }))
    assert.strictEqual(first[13], "    receive queue     - used   8192 of   8192, 100.00% full, changed by:  +8192")
  })

  it("missing values print UNKNOWN", () => {
    const lines = linesOf(formatReport({ previous: undefined, current: snapshot(), intervalSeconds: 10, final: false, formatTime: utc }))
    assertLines(lines, [
      "*******************************************************************",
      "    Status at 2017-03-10 10:00:00 (updated every: 10s)",
      "",
      "Progress Overview:",
      "    UNKNOWN, UNKNOWN of UNKNOWN object have been migrated, ETA: UNKNOWN",
      "",
      "Processed Objects by Thread Groups:",
      "    observer thread   - processed:       0, current speed: UNKNOWN Lo/s, average speed: UNKNOWN Lo/s",
      "    receiver threads  - processed:       0, current speed: UNKNOWN Lo/s, average speed: UNKNOWN Lo/s",
      "    storer threads    - processed:       0, current speed: UNKNOWN Lo/s, average speed: UNKNOWN Lo/s",
      "    committer threads - processed:       0, current speed: UNKNOWN Lo/s, average speed: UNKNOWN Lo/s",
      "",
      "Queue Usage:",
      "    receive queue     - used UNKNOWN of UNKNOWN, UNKNOWN% full, changed by: UNKNOWN",
      "    store queue       - used UNKNOWN of UNKNOWN, UNKNOWN% full, changed by: UNKNOWN",
      "    commit queue      - used UNKNOWN of UNKNOWN, UNKNOWN% full, changed by: UNKNOWN",
      "",
      "Data Volume:",
      "    received          - volume:         0 B, current speed: UNKNOWN MiB/s, average speed: UNKNOWN MiB/s (0 bytes)",
      "    stored            - volume:         0 B, current speed: UNKNOWN MiB/s, average speed: UNKNOWN MiB/s (0 bytes)",
      "    committed         - volume:         0 B, current speed: UNKNOWN MiB/s, average speed: UNKNOWN MiB/s (0 bytes)",
      ""
    ])
  })

  it("defaults to local time", () => {
    const text = formatReport({ previous, current, intervalSeconds: 10, final: false })
    assert.strictEqual(linesOf(text)[1], `    Status at ${formatLocalTime(current.at)} (updated every: 10s)`)
    assert.match(formatLocalTime(current.at), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/)
  })
})

describe("lines ported from the original's unit tests", () => {
  it("queue lines", () => {
    assert.strictEqual(
      formatQueueLine("receiver queue", 50, { used: 112, capacity: 4096 }),
      "    receiver queue    - used    112 of   4096,   2.73% full, changed by:    +62"
    )
    assert.strictEqual(
      formatQueueLine("receiver queue", 4096, { used: 2048, capacity: 4096 }),
      "    receiver queue    - used   2048 of   4096,  50.00% full, changed by:  -2048"
    )
    // 32 of 1024 = 3.125 %: Rust rounds the tie to even
    assert.strictEqual(
      formatQueueLine("store queue", 32, { used: 32, capacity: 1024 }),
      "    store queue       - used     32 of   1024,   3.12% full, changed by:     +0"
    )
  })

  it("thread line", () => {
    assert.strictEqual(
      formatThreadLine("receiver thread", 500, 650, 3300, 15600),
      "    receiver thread   - processed:     650, current speed:    45.5 Lo/s, average speed:    41.7 Lo/s"
    )
  })

  it("progress overview", () => {
    const at = start + 1000
    assert.strictEqual(
      formatProgressLine(snapshot({ at }), utc),
      "    UNKNOWN, UNKNOWN of UNKNOWN object have been migrated, ETA: UNKNOWN"
    )
    const committed10 = { observer: 0, receiver: 0, storer: 0, committer: 10 }
    assert.strictEqual(
      formatProgressLine(snapshot({ at, processed: committed10, total: 50 }), utc),
      "    UNKNOWN, UNKNOWN of 50 object have been migrated, ETA: UNKNOWN"
    )
    assert.strictEqual(
      formatProgressLine(snapshot({ at, processed: committed10, remaining: 60 }), utc),
      "    UNKNOWN, UNKNOWN of UNKNOWN object have been migrated, ETA: 2017-03-10 10:00:06 (0h 00m 05s)"
    )
    assert.strictEqual(
      formatProgressLine(snapshot({ at, processed: committed10, remaining: 30, total: 80 }), utc),
      "    75.00%, 60 of 80 object have been migrated, ETA: 2017-03-10 10:00:03 (0h 00m 02s)"
    )
  })

  it("ETA in progress: 1630 of 598985 after 10.5 s (rounded down to 10 s)", () => {
    const s = snapshot({
      at: start + 10_500,
      processed: { observer: 0, receiver: 0, storer: 0, committer: 1630 },
      remaining: 598985,
      total: 598985
    })
    assert.strictEqual(progressOf(s).etaSeconds, 3664)
    assert.match(formatProgressLine(s, utc), /ETA: 2017-03-10 11:01:14 \(1h 01m 04s\)$/)
  })
})

describe("progressOf", () => {
  const committed = (n: number) => ({ observer: n, receiver: n, storer: n, committer: n })

  it("unknown totals", () => {
    const p = progressOf(snapshot({ at: start + 120_000, processed: committed(1542) }))
    assert.deepStrictEqual(p, {
      migrated: undefined,
      total: undefined,
      percent: undefined,
      remainingNow: undefined,
      elapsedSeconds: 120,
      etaSeconds: undefined
    })
  })

  it("zero committed: percent known, ETA unknown", () => {
    const p = progressOf(snapshot({ at: start + 120_000, remaining: 1234, total: 2000 }))
    assert.strictEqual(p.migrated, 766)
    assert.strictEqual(p.percent, 38.3)
    assert.strictEqual(p.remainingNow, 1234)
    assert.strictEqual(p.etaSeconds, undefined)
  })

  it("less than a whole second elapsed: ETA unknown", () => {
    const p = progressOf(snapshot({ at: start + 999, processed: committed(154), remaining: 1234, total: 1234 }))
    assert.strictEqual(p.elapsedSeconds, 0)
    assert.strictEqual(p.etaSeconds, undefined)
  })

  it("normal", () => {
    const p = progressOf(snapshot({ at: start + 1_940_500, processed: committed(10), remaining: 30, total: 80 }))
    assert.deepStrictEqual(p, {
      migrated: 60,
      total: 80,
      percent: 75,
      remainingNow: 20,
      elapsedSeconds: 1940,
      etaSeconds: 3880
    })
    assert.strictEqual(formatDuration(3880), "1h 04m 40s")
  })

  it("percentages as the original formats them", () => {
    const pct = (migrated: number, total: number) =>
      toFixedHalfEven(progressOf(snapshot({ remaining: total - migrated, total })).percent!, 2)
    assert.strictEqual(pct(50, 200), "25.00")
    assert.strictEqual(pct(0, 200), "0.00")
    assert.strictEqual(pct(2482, 2482), "100.00")
    assert.strictEqual(progressOf(snapshot({ remaining: 0, total: 0 })).percent, 100)
  })
})

describe("number formatting", () => {
  it("{:+6}: the sign is always shown", () => {
    assert.strictEqual(formatSigned(4235, 6), " +4235")
    assert.strictEqual(formatSigned(-12, 6), "   -12")
    assert.strictEqual(formatSigned(0, 6), "    +0")
    assert.strictEqual(formatSigned(-2048, 6), " -2048")
  })

  it("{:7.1} and {:6.2}: right-aligned, ties to even like Rust", () => {
    assert.strictEqual(formatFixed(892.66, 7, 1), "  892.7")
    assert.strictEqual(formatFixed(100, 6, 2), "100.00")
    assert.strictEqual(formatFixed(0.25, 7, 1), "    0.2")
    assert.strictEqual(formatFixed(0.375, 6, 2), "  0.38")
    assert.strictEqual(formatFixed(1234567.89, 7, 1), "1234567.9")
    assert.strictEqual(formatFixed(undefined, 7, 1), "UNKNOWN")
    assert.strictEqual(formatFixed(Number.NaN, 7, 1), "UNKNOWN")
  })

  it("durations", () => {
    assert.strictEqual(formatDuration(0), "0h 00m 00s")
    assert.strictEqual(formatDuration(3664), "1h 01m 04s")
    assert.strictEqual(formatDuration(100 * 3600 + 59), "100h 00m 59s")
  })

  it("bytes", () => {
    assert.strictEqual(formatBytes(0), "0 B")
    assert.strictEqual(formatBytes(1023), "1023 B")
    assert.strictEqual(formatBytes(1024), "1.00 KiB")
    assert.strictEqual(formatBytes(1536), "1.50 KiB")
    assert.strictEqual(formatBytes(20 * MiB), "20.00 MiB")
    assert.strictEqual(formatBytes(1.5 * GiB), "1.50 GiB")
    assert.strictEqual(formatBytes(5 * 1024 * GiB), "5.00 TiB")
  })
})

describe("monitor loop", () => {
  it.effect("writes one report per interval; the final report shares the previous snapshot", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const stats = yield* Stats
      yield* stats.setTotals({ remaining: 100, total: 120 })
      yield* stats.trackQueue("receive", 8, Effect.succeed(3))
      const monitor = yield* makeMonitor({
        interval: "10 seconds",
        write: (text) => Effect.sync(() => void written.push(text)),
        formatTime: utc
      })
      const fiber = yield* Effect.forkChild(monitor.loop)

      for (let i = 0; i < 5; i++) yield* stats.processed("committer", MiB)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(written.length, 1)
      for (let i = 0; i < 5; i++) yield* stats.processed("committer", MiB)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(written.length, 2)

      yield* Fiber.interrupt(fiber)
      for (let i = 0; i < 3; i++) yield* stats.processed("committer", MiB)
      yield* TestClock.adjust("5 seconds")
      yield* monitor.final
      assert.strictEqual(written.length, 3)

      const [first, second, final] = written.map(linesOf)
      assert.strictEqual(first![1], "    Status at 1970-01-01 00:00:10 (updated every: 10s)")
      assert.strictEqual(second![1], "    Status at 1970-01-01 00:00:20 (updated every: 10s)")
      assert.strictEqual(final![1], "    Status at 1970-01-01 00:00:25 (final stats)")
      // 120 - 100 + 10 = 30 of 120; ETA 100 / 10 * 20 s - 20 s = 180 s
      assert.strictEqual(
        second![4],
        "    25.00%, 30 of 120 object have been migrated, ETA: 1970-01-01 00:03:20 (0h 03m 00s)"
      )
      // the final report's current speed is measured against the second report: 3 in 5 s
      assert.strictEqual(
        final![10],
        "    committer threads - processed:      13, current speed:     0.6 Lo/s, average speed:     0.5 Lo/s"
      )
      assert.strictEqual(final![13], "    receive queue     - used      3 of      8,  37.50% full, changed by:     +0")
      assert.strictEqual(
        final![20],
        "    committed         - volume:   13.00 MiB, current speed:    0.60 MiB/s, average speed:    0.52 MiB/s (13631488 bytes)"
      )
    }).pipe(Effect.provide(Stats.layer)))

  it.effect("reportEvery keeps reporting until interrupted", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const fiber = yield* Effect.forkChild(
        reportEvery({ interval: "1 minute", write: (text) => Effect.sync(() => void written.push(text)), formatTime: utc })
      )
      yield* TestClock.adjust("3 minutes")
      assert.strictEqual(written.length, 3)
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust("3 minutes")
      assert.strictEqual(written.length, 3)
      assert.isTrue(written.every((t) => t.includes("(updated every: 60s)")))
    }).pipe(Effect.provide(Stats.layer)))
})
