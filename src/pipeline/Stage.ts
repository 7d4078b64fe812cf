/**
 * One generic stage: a named pool of fibers that take from an input, run a step, and hand results to
 * the next stage's bounded queue. The four thread groups of the original (observer, receivers,
 * storers, committers) are four uses of it.
 *
 * Shutdown follows the original's close-and-drain design:
 * - when the input is done, the workers finish and the stage ends its output queue, so the next stage
 *   drains what is buffered and ends in turn;
 * - when the stage ends, for whatever reason, it shuts its input down: upstream offers return false and
 *   upstream workers stop, so a stage that can no longer take anything never leaves the stages above it
 *   waiting on a full queue;
 * - `pipeline` runs the stages of one flow together: a stage that fails interrupts every stage upstream
 *   of it (nothing they produce could be used any more), while downstream drains what it already holds.
 */
import { Cause, Duration, Effect, Exit, Fiber, Option, Queue } from "effect"
import type { AdaptiveConcurrency } from "./AdaptiveConcurrency.ts"

export type Channel<A> = Queue.Queue<A, Cause.Done>

/** A bounded channel between two stages: offers suspend while it is full (backpressure). */
export const channel = <A>(capacity: number): Effect.Effect<Channel<A>> => Queue.bounded<A, Cause.Done>(capacity)

/**
 * Offers to the next stage; fails with `Done` when that stage has shut its input down, which ends the
 * worker quietly (the upstream half of the failure cascade).
 */
export const emit = <A>(queue: Queue.Enqueue<A, Cause.Done>, item: A): Effect.Effect<void, Cause.Done> =>
  Effect.flatMap(Queue.offer(queue, item), (accepted) => (accepted ? Effect.void : Cause.done()))

/**
 * Takes up to `size` items: waits for the first, then gathers more until the chunk is full or no item
 * has come for `idle`, so a partial chunk never waits long. Fails with `Done` once the queue is done.
 */
export const takeChunk = <A>(
  queue: Queue.Dequeue<A, Cause.Done>,
  size: number,
  idle: Duration.Input
): Effect.Effect<ReadonlyArray<A>, Cause.Done> =>
  Effect.gen(function*() {
    const chunk: Array<A> = [...(yield* Queue.takeBetween(queue, 1, size))]
    while (chunk.length < size) {
      const more = yield* Queue.takeBetween(queue, 1, size - chunk.length).pipe(
        Effect.timeoutOption(idle),
        Effect.catchTag("Done", () => Effect.succeed(Option.none<Array<A>>()))
      )
      if (Option.isNone(more)) break
      chunk.push(...more.value)
    }
    return chunk
  })

export interface StageOptions<A, E, R> {
  readonly name: string
  /** a fixed number of workers, or a limit that adapts (AdaptiveConcurrency: `max` fibers, `current` at work) */
  readonly workers: number | AdaptiveConcurrency
  /** The next unit of work; fails with `Done` when there is none left. */
  readonly take: Effect.Effect<A, E | Cause.Done, R>
  readonly step: (item: A) => Effect.Effect<void, E | Cause.Done, R>
  /** This stage's input queue, shut down if the stage fails so that upstream stops. */
  readonly input?: Queue.Enqueue<any, Cause.Done> | undefined
  /** The next stage's queue, ended when the last worker finishes (or the stage fails). */
  readonly output?: Queue.Enqueue<any, Cause.Done> | undefined
}

export const run = <A, E, R>(options: StageOptions<A, E, R>): Effect.Effect<void, E, R> => {
  const limit = typeof options.workers === "number" ? undefined : options.workers
  const unit = limit === undefined ? Effect.flatMap(options.take, options.step) : limit.work(options.take, options.step)
  const worker = Effect.forever(unit).pipe(
    Effect.catchTag("Done", () => Effect.void)
  ) as Effect.Effect<void, E, R>
  const pool = Effect.all(Array.from({ length: limit?.max ?? (options.workers as number) }, () => worker), {
    concurrency: "unbounded",
    discard: true
  })
  // the controller lives exactly as long as the workers
  const workers = limit === undefined ? pool : Effect.raceFirst(pool, limit.control)
  return workers.pipe(
    // after a normal end the input is done and drained, so this discards nothing; after a failure, or
    // when the output was shut down under the workers, it tells upstream to stop
    Effect.ensuring(options.input === undefined ? Effect.void : Effect.asVoid(Queue.shutdown(options.input))),
    Effect.ensuring(options.output === undefined ? Effect.void : Effect.asVoid(Queue.end(options.output))),
    Effect.withLogSpan(options.name)
  )
}

/**
 * Runs the stages of one flow (listed upstream first) side by side. When a stage fails for good, every
 * stage above it is interrupted at once: their work could never be committed, and waiting for them to
 * notice (a full queue, a memory budget nobody gives back, a slow read) could take for ever. Stages
 * below it run to their end, so what was already stored is still committed. The flow's error is the
 * first real failure in flow order (an interruption only if there is nothing else).
 */
export const pipeline = <E, R>(stages: ReadonlyArray<Effect.Effect<void, E, R>>): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const fibers: Array<Fiber.Fiber<void, E>> = []
    for (const [i, stage] of stages.entries()) {
      const above = fibers.slice(0, i)
      fibers.push(yield* Effect.forkChild(stage.pipe(
        // interrupting in the background: this stage's failure is reported without waiting for theirs
        Effect.onError(() => Effect.forEach(above, (f) => Effect.forkDetach(Fiber.interrupt(f)), { discard: true }))
      )))
    }
    const exits = yield* Effect.forEach(fibers, Fiber.await)
    const failed = exits.find((exit) => Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) ??
      exits.find(Exit.isFailure)
    if (failed !== undefined) return yield* failed
  })
