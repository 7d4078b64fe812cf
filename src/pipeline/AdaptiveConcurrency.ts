/**
 * How many workers of a stage may work at once, found by trying (hill climbing on throughput): a
 * stage whose work waits on a far server (each S3 PUT a round trip away) needs more workers in flight
 * than one next to it, and neither the link nor the server says how many. So the stage starts at
 * `initial` and, every `window`, compares the items it finished per second with the window before:
 *
 * - it probes upward (x2 while each step pays, then x1.5) only while every permit was in use (the stage
 *   had more work than workers: without that, more workers cannot help);
 * - a probe is judged on the window after the one in which it began (that one mixes both levels),
 *   against the rate of the level it left, smoothed over the windows it held;
 * - an upward probe that did not raise the rate by `gain` (8 %) steps back to the last level that paid,
 *   and the next probe, `cooldown` windows later (the rate moves with everything else on the machine),
 *   tries fewer workers: kept if the rate holds, so that luck cannot only ever ratchet the level up;
 * - it never goes below `initial` (the fixed setting's proven value) nor above `max`; the server's own
 *   limit, SlowDown, is honoured below this by the S3 store (s3/AdaptiveLimit.ts), whose waits show
 *   here as a rate that no longer grows.
 *
 * A window lasts until it has seen at least `2 × limit` completions (at least `window`, at most 10 s),
 * so a stage of few large objects decides rarely and on enough data.
 */
import { Clock, Duration, Effect, Semaphore } from "effect"

export interface AdaptiveConcurrency {
  /** the most workers there can be: the stage runs this many fibers, the permits let `current` work */
  readonly max: number
  /**
   * One unit of a worker's loop under a permit: `take`, then `step` on what it took, counted as one
   * completed item when the step succeeds. Only the step counts as busy: a worker waiting for input
   * holds a permit but shows that more workers would not help.
   */
  readonly work: <A, E, R>(take: Effect.Effect<A, E, R>, step: (item: A) => Effect.Effect<void, E, R>) => Effect.Effect<void, E, R>
  readonly current: Effect.Effect<number>
  /** the controller: forever, one decision per window; fork it in the stage's scope */
  readonly control: Effect.Effect<never>
}

export interface AdaptiveConcurrencyOptions {
  readonly initial: number
  readonly max: number
  readonly window?: Duration.Input | undefined
  /** relative rate increase a probe must show to be kept (default 0.08) */
  readonly gain?: number | undefined
  /** windows to wait after a probe that did not pay (default 10) */
  readonly cooldown?: number | undefined
  readonly onChange?: ((limit: number, reason: "probe up" | "probe down" | "back") => Effect.Effect<void>) | undefined
}

/** The controller's state between windows; `decide` is pure, so that its rules can be tested alone. */
export interface ClimbState {
  readonly limit: number
  /** the level that last paid, and its rate (smoothed while holding): where a failed probe returns */
  readonly base: number
  readonly baseRate: number | undefined
  readonly probing: "up" | "down" | undefined
  /** the window right after a change mixes both levels: it is not judged */
  readonly settling: boolean
  readonly growth: number
  readonly wait: number
  /** after an upward probe that did not pay, the next probe tries fewer */
  readonly downNext: boolean
}

export const initialState = (initial: number): ClimbState => ({
  limit: initial,
  base: initial,
  baseRate: undefined,
  probing: undefined,
  settling: false,
  growth: 2,
  wait: 0,
  downNext: false
})

export const decide = (
  state: ClimbState,
  window: { readonly rate: number; readonly saturated: boolean },
  bounds: { readonly initial: number; readonly max: number; readonly gain: number; readonly cooldown: number }
): ClimbState => {
  if (state.settling) return { ...state, settling: false }
  const { rate } = window
  const hold = (from: ClimbState): ClimbState => ({ ...from, base: from.limit, probing: undefined })
  const up = (from: ClimbState, growth: number): ClimbState =>
    !window.saturated || from.limit >= bounds.max
      ? hold(from)
      : {
        ...from,
        limit: Math.min(bounds.max, Math.max(from.limit + 1, Math.ceil(from.limit * growth))),
        base: from.limit,
        probing: "up",
        settling: true,
        growth
      }
  const back = (downNext: boolean): ClimbState => ({
    ...state,
    limit: state.base,
    probing: undefined,
    settling: true,
    growth: 1.5,
    wait: bounds.cooldown,
    downNext
  })
  const baseRate = state.baseRate ?? rate
  switch (state.probing) {
    case "up":
      // it paid: keep it, and go on while the stage still has more work than workers
      return rate >= baseRate * (1 + bounds.gain) ? up({ ...state, baseRate: rate }, state.growth) : back(true)
    case "down":
      // as fast with fewer: keep fewer
      return rate >= baseRate * (1 - bounds.gain / 2)
        ? { ...hold(state), baseRate: rate, wait: bounds.cooldown, downNext: false }
        : back(false)
    default: {
      const smoothed = state.baseRate === undefined ? rate : 0.7 * state.baseRate + 0.3 * rate
      const holding = { ...state, baseRate: smoothed }
      if (state.wait > 0) return { ...holding, wait: state.wait - 1 }
      if (state.downNext && state.limit > bounds.initial) {
        return {
          ...holding,
          limit: Math.max(bounds.initial, Math.floor(state.limit / 1.5)),
          base: state.limit,
          probing: "down",
          settling: true,
          downNext: false
        }
      }
      return up({ ...holding, downNext: false }, state.growth)
    }
  }
}

export const make = (options: AdaptiveConcurrencyOptions): Effect.Effect<AdaptiveConcurrency> =>
  Effect.gen(function*() {
    const max = Math.max(1, options.max)
    const initial = Math.max(1, Math.min(options.initial, max))
    const semaphore = yield* Semaphore.make(initial)
    const windowMillis = Duration.toMillis(Duration.fromInputUnsafe(options.window ?? "500 millis"))
    const bounds = { initial, max, gain: options.gain ?? 0.08, cooldown: options.cooldown ?? 10 }
    let state = initialState(initial)
    let inFlight = 0
    let completed = 0
    let saturated = false

    const work = <A, E, R>(take: Effect.Effect<A, E, R>, step: (item: A) => Effect.Effect<void, E, R>) =>
      semaphore.withPermit(Effect.flatMap(take, (item) => {
        inFlight += 1
        if (inFlight >= state.limit) saturated = true
        return step(item).pipe(
          Effect.tap(() => Effect.sync(() => void (completed += 1))),
          Effect.ensuring(Effect.sync(() => void (inFlight -= 1)))
        )
      }))

    const control: Effect.Effect<never> = Effect.gen(function*() {
      for (;;) {
        const start = yield* Clock.currentTimeMillis
        completed = 0
        saturated = inFlight >= state.limit
        yield* Effect.sleep(windowMillis)
        while (completed < 2 * state.limit && (yield* Clock.currentTimeMillis) - start < 10_000) {
          yield* Effect.sleep(windowMillis)
        }
        const elapsed = (yield* Clock.currentTimeMillis) - start
        if (completed === 0) continue
        const before = state
        state = decide(state, { rate: completed / (elapsed / 1000), saturated }, bounds)
        if (state.limit !== before.limit) {
          yield* semaphore.resize(state.limit)
          if (options.onChange !== undefined) {
            yield* options.onChange(state.limit, state.probing === "up" ? "probe up" : state.probing === "down" ? "probe down" : "back")
          }
        }
      }
    })

    return { max, work, current: Effect.sync(() => state.limit), control }
  })

/** A fixed number of workers, for stages whose size is pinned. */
export const fixed = (workers: number): AdaptiveConcurrency => ({
  max: workers,
  work: (take, step) => Effect.flatMap(take, step),
  current: Effect.succeed(workers),
  control: Effect.never
})
