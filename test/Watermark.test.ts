// The watermark tracker as a pure module: whatever order rows complete in, the watermark never passes a
// row that is not committed, and once everything listed is committed it reaches the last key.
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { makeTracker } from "../src/pipeline/Watermark.ts"

type Event = { readonly kind: "commit" | "fail"; readonly index: number }

/** Keys 0..n-1 listed in order; completions in a random order, some of them failures. */
const scenario = fc.integer({ min: 1, max: 60 }).chain((n) =>
  fc.tuple(
    fc.constant(n),
    fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: 0, maxLength: n }),
    fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    fc.integer({ min: 1, max: 8 })
  )
)

describe("Watermark tracker", () => {
  it("never passes an uncommitted key, whatever the completion order (property)", () => {
    fc.assert(
      fc.property(scenario, ([n, order, failing, listAhead]) => {
        const key = (i: number) => `k${String(i).padStart(4, "0")}`
        const tracker = makeTracker()
        const committed = new Set<number>()
        let listed = 0
        const events: Array<Event> = order.map((index) => ({ kind: failing[index] && index % 5 === 0 ? "fail" : "commit", index }))
        const check = () => {
          const w = tracker.current()
          if (w === undefined) return
          const upTo = Number(w.slice(1))
          assert.isBelow(upTo, listed, "the watermark is a listed key")
          for (let i = 0; i <= upTo; i++) assert.isTrue(committed.has(i), `watermark ${w} passed uncommitted ${key(i)}`)
        }
        for (const event of events) {
          // rows are listed ahead of their completion, as the observer runs ahead of the committers
          while (listed <= event.index || (listed < n && listed < event.index + listAhead)) tracker.listed(key(listed++))
          if (event.kind === "commit") {
            committed.add(event.index)
            tracker.committed(key(event.index))
          } else {
            tracker.failed(key(event.index))
          }
          check()
        }
        const allCommitted = events.length === n && events.every((e) => e.kind === "commit")
        if (allCommitted) assert.strictEqual(tracker.current(), key(n - 1))
        if (allCommitted) assert.strictEqual(tracker.inFlight(), 0)
      }),
      { numRuns: 500 }
    )
  })

  it("keeps only keys in flight: memory stays flat over a long run", () => {
    const tracker = makeTracker()
    for (let i = 0; i < 50_000; i++) {
      tracker.listed(`k${i}`)
      if (i >= 10) tracker.committed(`k${i - 10}`)
      assert.isAtMost(tracker.inFlight(), 11)
    }
    assert.strictEqual(tracker.current(), "k49989")
  })

  it("stops at the first failed row and then keeps nothing", () => {
    const tracker = makeTracker()
    for (const k of ["a", "b", "c", "d"]) tracker.listed(k)
    tracker.committed("a")
    tracker.failed("b")
    tracker.committed("c")
    tracker.committed("b")
    tracker.listed("e")
    tracker.committed("e")
    assert.strictEqual(tracker.current(), "a")
    assert.strictEqual(tracker.inFlight(), 0)
  })
})
