// The storers' number adapts to the link: more of them while more raise the rate (an S3 far away, each
// PUT a round trip), back to the level that paid when more do not (a server at its limit), never below
// the start nor above the ceiling; --storer-threads alone pins them. The controller against simulated
// servers (latency-bound, capacity-bound), and the real executable against s3rver behind a proxy that
// delays every PUT.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Queue, Semaphore } from "effect"
import * as AdaptiveConcurrency from "../src/pipeline/AdaptiveConcurrency.ts"
import * as Stage from "../src/pipeline/Stage.ts"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertNoStrayKeys } from "./support/Verify.ts"

const bounds = { initial: 16, max: 128, gain: 0.08, cooldown: 10 }
const start = AdaptiveConcurrency.initialState(16)

/** One window after the settling one: what the controller decides on the rate of `window`. */
const judged = (state: AdaptiveConcurrency.ClimbState, window: { readonly rate: number; readonly saturated: boolean }) =>
  AdaptiveConcurrency.decide(state.settling ? AdaptiveConcurrency.decide(state, window, bounds) : state, window, bounds)

describe("AdaptiveConcurrency.decide", () => {
  it("probes up (x2) while every permit is in use, skips the window of the change, keeps a probe that pays and goes on", () => {
    const probe = AdaptiveConcurrency.decide(start, { rate: 100, saturated: true }, bounds)
    assert.deepStrictEqual([probe.limit, probe.base, probe.probing, probe.settling], [32, 16, "up", true])
    // the window of the change is not judged, even when it looks bad
    const settled = AdaptiveConcurrency.decide(probe, { rate: 10, saturated: true }, bounds)
    assert.deepStrictEqual([settled.limit, settled.probing, settled.settling], [32, "up", false])
    const kept = AdaptiveConcurrency.decide(settled, { rate: 190, saturated: true }, bounds)
    assert.deepStrictEqual([kept.limit, kept.base, kept.probing], [64, 32, "up"])
  })

  it("an upward probe that does not pay goes back, waits, then tries fewer: kept if the rate holds", () => {
    const probe = AdaptiveConcurrency.decide(start, { rate: 100, saturated: true }, bounds)
    const kept = judged(probe, { rate: 200, saturated: true }) // 32 paid, probing 64
    const back = judged(kept, { rate: 205, saturated: true }) // 64 did not
    assert.deepStrictEqual([back.limit, back.probing, back.wait, back.downNext], [32, undefined, 10, true])
    let state = judged(back, { rate: 200, saturated: true })
    for (let i = 0; i < 9; i++) {
      state = AdaptiveConcurrency.decide(state, { rate: 200, saturated: true }, bounds)
      assert.strictEqual(state.limit, 32, `window ${i} of the wait`)
    }
    const down = AdaptiveConcurrency.decide(state, { rate: 200, saturated: true }, bounds)
    assert.deepStrictEqual([down.limit, down.probing], [21, "down"])
    const fewer = judged(down, { rate: 198, saturated: true })
    assert.deepStrictEqual([fewer.limit, fewer.probing, fewer.base], [21, undefined, 21])
    // fewer that lose the rate go back up
    const worse = judged(down, { rate: 150, saturated: true })
    assert.deepStrictEqual([worse.limit, worse.downNext], [32, false])
  })

  it("never probes while permits are left over (more workers cannot help), never passes the ceiling nor goes below the start", () => {
    assert.strictEqual(AdaptiveConcurrency.decide(start, { rate: 100, saturated: false }, bounds).limit, 16)
    let state = start
    for (let i = 0; i < 40; i++) state = AdaptiveConcurrency.decide(state, { rate: 100 * 2 ** i, saturated: true }, bounds)
    assert.strictEqual(state.limit, 128)
    for (let i = 0; i < 200; i++) {
      state = AdaptiveConcurrency.decide(state, { rate: 1000 / (i + 1), saturated: i % 3 !== 0 }, bounds)
      assert.isAtLeast(state.limit, 16)
      assert.isAtMost(state.limit, 128)
    }
  })
})

/**
 * A stage of `max` fibers under the controller, over `items` items whose step is `serve`; returns the
 * limits it took, one reading every 100 ms.
 */
const simulate = (serve: Effect.Effect<void>, items: number) =>
  Effect.gen(function*() {
    const limit = yield* AdaptiveConcurrency.make({ initial: 4, max: 64, window: "200 millis" })
    const input = yield* Stage.channel<number>(items)
    for (let i = 0; i < items; i++) yield* Queue.offer(input, i)
    yield* Queue.end(input)
    const seen: Array<number> = []
    const watcher = yield* Effect.forkChild(Effect.forever(Effect.andThen(Effect.flatMap(limit.current, (n) => Effect.sync(() => seen.push(n))), Effect.sleep("100 millis"))))
    yield* Stage.run({ name: "sim", workers: limit, take: Queue.take(input), step: () => serve, input })
    yield* Fiber.interrupt(watcher)
    return seen
  })

describe("AdaptiveConcurrency against simulated servers", () => {
  it.live("a server 20 ms away with room for all: the limit climbs from 4 towards the ceiling", () =>
    Effect.gen(function*() {
      const seen = yield* simulate(Effect.sleep("20 millis"), 6_000)
      assert.isAtLeast(Math.max(...seen), 32, seen.join(","))
    }), 30_000)

  it.live("a server that serves 4 at a time: probes past what keeps it busy do not pay, the limit stays near 4", () =>
    Effect.gen(function*() {
      const server = yield* Semaphore.make(4)
      const seen = yield* simulate(server.withPermit(Effect.sleep("5 millis")), 2_500)
      // a few more than the server's 4 keep it busy between hand-overs (that can pay once); after that
      // every probe shows no gain and returns: most of the run at 8 or below, never near the ceiling
      const near = seen.filter((n) => n <= 8).length
      assert.isAtLeast(near, seen.length * 0.7, seen.join(","))
      assert.isAtMost(Math.max(...seen), 16, seen.join(","))
    }), 30_000)
})

const env = FaultProxy.layerWith({ seed: 3 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const data = Effect.gen(function*() {
  yield* createNice2Schema()
  const objects: Array<InsertedObject> = []
  for (let i = 0; i < 1_000; i++) objects.push(yield* insertObject({ bytes: randomBytes(512 + (i % 7), 100 + i) }))
  return objects
})

const grown = (stderr: string) => [...stderr.matchAll(/storers: (\d+) at work/g)].map((m) => Number(m[1]))

describe("lo-migrate migrate: storers adapt to a far S3", () => {
  it.live("every PUT 60 ms away: the default storers grow past 16 and every row is migrated; --storer-threads 16 stays at 16", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "far", method: "PUT", count: 1_000_000, fault: { kind: "slow", delayMs: 60 } }])
      const adaptive = yield* runCli(["migrate", ...(yield* targetVia(proxy.endpoint))], { env: { LOG_LEVEL: "debug" } })
      assert.strictEqual(adaptive.code, 0, adaptive.stderr)
      assert.include(adaptive.stderr, "adaptive up to:   128")
      const limits = grown(adaptive.stderr)
      assert.isAbove(Math.max(0, ...limits), 16, adaptive.stderr.slice(-3000))
      assert.isAtMost(Math.max(...limits), 128)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("--storer-threads alone pins them: no adaptation", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "far", method: "PUT", count: 1_000_000, fault: { kind: "slow", delayMs: 60 } }])
      const pinned = yield* runCli(["migrate", ...(yield* targetVia(proxy.endpoint)), "--storer-threads", "16"], { env: { LOG_LEVEL: "debug" } })
      assert.strictEqual(pinned.code, 0, pinned.stderr)
      assert.notInclude(pinned.stderr, "adaptive up to")
      assert.deepStrictEqual(grown(pinned.stderr), [])
      yield* assertAllMigrated(objects)
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("--max-storer-threads below --storer-threads is a setting error naming both", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const refused = yield* runCli(["migrate", ...(yield* targetVia(proxy.endpoint)), "--storer-threads", "8", "--max-storer-threads", "4"])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, "--max-storer-threads")
      assert.include(refused.stderr, "--storer-threads 8")
    }).pipe(Effect.scoped, Effect.provide(env)), 60_000)
})
