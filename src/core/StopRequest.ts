/**
 * A request to stop gracefully, from outside a command (the first SIGINT or SIGTERM). A command that
 * can stop gracefully `enable`s it and polls `requested`; as long as none has, a signal interrupts at
 * once, as it would without this service.
 */
import { Context, Effect, Layer, type Scope } from "effect"

/** What the process's signal handlers share with the program. */
export interface StopCell {
  requested: boolean
  enabled: boolean
  /**
   * Synchronous, local clean-ups (temp files) run when the process ends at once because the
   * interruption's own clean-up did not finish in time (the second signal, with a server that does
   * not answer): nothing here may wait on a server.
   */
  readonly atHardStop: Set<() => void>
}

export class StopRequest extends Context.Service<StopRequest, {
  /** true once a stop was asked for */
  readonly requested: Effect.Effect<boolean>
  /** the running command honours `requested`: the first signal asks, the second interrupts */
  readonly enable: Effect.Effect<void>
  /** runs `cleanUp` if the process has to end at once, for as long as the current scope is open */
  readonly atHardStop: (cleanUp: () => void) => Effect.Effect<void, never, Scope.Scope>
}>()("lo-migrate/StopRequest") {
  /** A service over a plain cell that the process's signal handlers share with the program. */
  static readonly fromCell = (cell: StopCell) =>
    Layer.succeed(
      StopRequest,
      StopRequest.of({
        requested: Effect.sync(() => cell.requested),
        enable: Effect.sync(() => {
          cell.enabled = true
        }),
        atHardStop: (cleanUp) =>
          Effect.acquireRelease(Effect.sync(() => cell.atHardStop.add(cleanUp)), () =>
            Effect.sync(() => {
              cell.atHardStop.delete(cleanUp)
            })).pipe(Effect.asVoid)
      })
    )
}
