// The fault matrix, steps: the commit, the watermark flush, the run lock's session (see test/support/FaultMatrix.ts for the faults, the
// bounds and what every cell must hold). RELIABILITY.md lists every cell with its bound.
import { describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { env, faultKinds, runCell } from "./support/FaultMatrix.ts"

describe("fault matrix: the commit, the watermark flush, the run lock's session", () => {
  for (const step of ["commit", "watermark", "lock"] as const) {
    for (const fault of faultKinds) {
      it.live(`${step} x ${fault}: ends within its bound, nothing marked without its object, no temp file, a rerun finishes`, () =>
        runCell(step, fault).pipe(Effect.scoped, Effect.provide(env)))
    }
  }
})
