// The fault matrix, steps: a single PUT, a part, the completion (see test/support/FaultMatrix.ts for the faults, the
// bounds and what every cell must hold). RELIABILITY.md lists every cell with its bound.
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { env, faultKinds, runCell } from "./support/FaultMatrix.ts"

describe("fault matrix: a single PUT, a part, the completion", () => {
  for (const step of ["put", "part", "complete"] as const) {
    for (const fault of faultKinds) {
      it.live(`${step} x ${fault}: ends within its bound, nothing marked without its object, no temp file, a rerun finishes`, () =>
        runCell(step, fault).pipe(Effect.scoped, Effect.provide(env)))
    }
  }
})
