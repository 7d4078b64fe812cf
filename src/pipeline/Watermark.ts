/**
 * The resume watermark: the last listed key such that this row and every row listed before it were
 * committed. Completions arrive out of order (several committers, chunks), so the tracker keeps the
 * keys in flight in listing order and advances over the committed prefix.
 *
 * A failed row stops the watermark for the rest of the run: failed rows stay unmarked and must be
 * listed again by the next run, which starts after the watermark. Keeping failed keys aside instead
 * would need state that grows with the failures; stopping costs only a longer listing on resume.
 *
 * Memory: only the keys listed but not yet settled (bounded by the pipeline's queues); once stopped,
 * nothing is kept at all.
 */

export interface WatermarkTracker {
  /** a row was listed (in the observer's order) */
  readonly listed: (key: string) => void
  /** the row was marked migrated */
  readonly committed: (key: string) => void
  /** the row was skipped: it must be retried, so the watermark can never pass it */
  readonly failed: (key: string) => void
  /** the current watermark, or undefined while no prefix of the listing is committed */
  readonly current: () => string | undefined
  /** keys listed and not yet settled (for tests and memory checks) */
  readonly inFlight: () => number
}

export const makeTracker = (): WatermarkTracker => {
  // listing order; `head` instead of shift() keeps advancing O(1)
  let order: Array<string> = []
  let head = 0
  const done = new Set<string>()
  let watermark: string | undefined
  let stopped = false

  const advance = () => {
    while (head < order.length && done.has(order[head]!)) {
      watermark = order[head]!
      done.delete(order[head]!)
      head++
    }
    if (head > 1024 && head * 2 > order.length) {
      order = order.slice(head)
      head = 0
    }
  }

  return {
    listed: (key) => {
      if (!stopped) order.push(key)
    },
    committed: (key) => {
      if (stopped) return
      done.add(key)
      advance()
    },
    failed: () => {
      if (stopped) return
      stopped = true
      order = []
      head = 0
      done.clear()
    },
    current: () => watermark,
    inFlight: () => order.length - head
  }
}
