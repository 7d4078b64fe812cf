/**
 * Retries for calls that cross the network (S3, PostgreSQL): exponential backoff with jitter, capped,
 * a bounded number of attempts, and only for errors worth retrying. Each retry is counted in Stats.
 */
import { Duration, Effect, Schedule } from "effect"
import { Stats } from "./Stats.ts"

export interface RetryPolicy {
  /** attempts in all, the first one included */
  readonly attempts: number
  readonly base: Duration.Input
  readonly cap: Duration.Input
}

export const defaultPolicy = (attempts: number): RetryPolicy => ({ attempts, base: "200 millis", cap: "10 seconds" })

/** `base * 2^n`, capped, each delay jittered by ±20 %, at most `attempts - 1` retries. */
export const backoff = (policy: RetryPolicy) =>
  Schedule.min([Schedule.exponential(policy.base), Schedule.spaced(policy.cap)]).pipe(
    Schedule.jittered,
    Schedule.upTo({ times: Math.max(0, policy.attempts - 1) })
  )

// One schedule per policy, not one per call: retrying wraps every S3 request and statement.
const schedules = new WeakMap<RetryPolicy, ReturnType<typeof backoff>>()
const scheduleOf = (policy: RetryPolicy) => {
  let schedule = schedules.get(policy)
  if (schedule === undefined) {
    schedule = backoff(policy)
    schedules.set(policy, schedule)
  }
  return schedule
}

/** Runs `effect`, retrying failures for which `isRetryable` holds, as the policy allows. */
export const retrying = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly policy: RetryPolicy; readonly isRetryable: (error: E) => boolean; readonly what: string }
): Effect.Effect<A, E, R | Stats> =>
  Effect.gen(function*() {
    const stats = yield* Stats
    return yield* Effect.retry(
      effect.pipe(
        Effect.tapError((error) =>
          options.isRetryable(error)
            ? Effect.andThen(stats.retried, Effect.logDebug(`${options.what}: transient failure, retrying`, error))
            : Effect.void
        )
      ),
      { schedule: scheduleOf(options.policy), while: options.isRetryable }
    )
  })
