/**
 * How many S3 requests may be in flight at once, adapted to what the server says (AIMD, as TCP does):
 *
 * - every request holds a permit of one shared semaphore while it is on the wire (not while it sleeps
 *   between retries);
 * - when S3 answers SlowDown (503), 429 or a throttling error, the limit becomes half the requests in
 *   flight (or of the limit, if lower), at most once per `cooldown` so that one burst of refusals
 *   counts once, and never below `min`;
 * - after `limit` requests in a row succeed at the current limit, it grows by one, up to `max`.
 *
 * The request that was refused is retried with backoff and jitter (Retry.ts) like any transient error.
 */
import { Clock, Effect, Semaphore } from "effect"

export interface AdaptiveLimit {
  readonly withPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** the server asked us to slow down */
  readonly slowDown: Effect.Effect<void>
  readonly current: Effect.Effect<number>
}

export interface AdaptiveLimitOptions {
  readonly max: number
  readonly min?: number
  /** a SlowDown within this many milliseconds of the last decrease does not decrease again */
  readonly cooldownMillis?: number
  /** called when the limit changes, e.g. to log it */
  readonly onChange?: (limit: number, reason: "slow-down" | "recover") => Effect.Effect<void>
}

export const make = (options: AdaptiveLimitOptions): Effect.Effect<AdaptiveLimit> =>
  Effect.gen(function*() {
    const max = Math.max(1, options.max)
    const min = Math.max(1, Math.min(options.min ?? 1, max))
    const cooldown = options.cooldownMillis ?? 1000
    const semaphore = yield* Semaphore.make(max)
    let limit = max
    let inFlight = 0
    /** the most requests on the wire at once since the last decrease */
    let peak = 0
    let successes = 0
    let lastDecrease = Number.NEGATIVE_INFINITY
    const changed = (reason: "slow-down" | "recover") =>
      Effect.andThen(semaphore.resize(limit), options.onChange?.(limit, reason) ?? Effect.void)

    const succeeded = Effect.suspend(() => {
      successes += 1
      if (successes < limit || limit >= max) return Effect.void
      successes = 0
      limit += 1
      return changed("recover")
    })

    const slowDown = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      successes = 0
      if (now - lastDecrease < cooldown || limit <= min) return
      lastDecrease = now
      // halve what is really on the wire: a limit far above it (adaptive storers start below their
      // ceiling) would take several halvings before the server felt any
      const base = peak === 0 ? limit : Math.min(limit, peak)
      peak = inFlight
      limit = Math.max(min, Math.floor(base / 2))
      yield* changed("slow-down")
    })

    return {
      withPermit: (effect) =>
        semaphore.withPermit(Effect.suspend(() => {
          inFlight += 1
          if (inFlight > peak) peak = inFlight
          return Effect.tap(effect, () => succeeded).pipe(Effect.ensuring(Effect.sync(() => void (inFlight -= 1))))
        })),
      slowDown,
      current: Effect.sync(() => limit)
    }
  })

/** S3's ways of saying "too fast": SlowDown (503), 429, and the throttling error names. */
export const isSlowDown = (error: unknown): boolean => {
  const e = (error ?? {}) as { readonly name?: string; readonly $metadata?: { readonly httpStatusCode?: number } }
  const status = e.$metadata?.httpStatusCode
  return status === 503 || status === 429 ||
    (e.name !== undefined && /^(SlowDown|Throttling|ThrottlingException|TooManyRequests|RequestLimitExceeded)$/.test(e.name))
}
