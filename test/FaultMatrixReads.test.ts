// The fault matrix, steps: listing a page, reading an object (see test/support/FaultMatrix.ts for the faults, the
// bounds and what every cell must hold). RELIABILITY.md lists every cell with its bound.
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { env, faultKinds, runCell } from "./support/FaultMatrix.ts"

describe("fault matrix: listing a page, reading an object", () => {
  for (const step of ["list", "read"] as const) {
    for (const fault of faultKinds) {
      it.live(`${step} x ${fault}: ends within its bound, nothing marked without its object, no temp file, a rerun finishes`, () =>
        runCell(step, fault).pipe(Effect.scoped, Effect.provide(env)))
    }
  }
})
