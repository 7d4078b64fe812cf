/**
 * A request to stop gracefully, from outside a command (the first SIGINT or SIGTERM). A command that
 * can stop gracefully `enable`s it and polls `requested`; as long as none has, a signal interrupts at
 * once, as it would without this service.
 */
import { Context, Effect, Layer } from "effect"

export class StopRequest extends Context.Service<StopRequest, {
  /** true once a stop was asked for */
  readonly requested: Effect.Effect<boolean>
  /** the running command honours `requested`: the first signal asks, the second interrupts */
  readonly enable: Effect.Effect<void>
}>()("lo-migrate/StopRequest") {
  /** A service over a plain cell that the process's signal handlers share with the program. */
  static readonly fromCell = (cell: { requested: boolean; enabled: boolean }) =>
    Layer.succeed(
      StopRequest,
      StopRequest.of({
        requested: Effect.sync(() => cell.requested),
        enable: Effect.sync(() => {
          cell.enabled = true
        })
      })
    )
}
