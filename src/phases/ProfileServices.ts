/**
 * A profile is the three phase services together (CopySource, PlanSource, AfterCopy): every profile
 * serves every command. `layer` turns a profile's parts into one layer of all three.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { AfterCopy } from "./AfterCopy.ts"
import { CopySource } from "./CopySource.ts"
import { PlanSource } from "./PlanSource.ts"

export type ProfileServices = CopySource | PlanSource | AfterCopy

export interface ProfileParts {
  readonly copy: CopySource["Service"]
  readonly plan: Omit<PlanSource["Service"], "table">
  readonly afterCopy: Omit<AfterCopy["Service"], "table">
}

/** the profile's layer: `build` may use the layer's scope (e.g. for a pool of its own) */
export const layer = <E, R>(build: Effect.Effect<ProfileParts, E, R>): Layer.Layer<ProfileServices, E, Exclude<R, Scope.Scope>> =>
  Layer.effectContext(
    Effect.map(build, ({ afterCopy, copy, plan }) =>
      Context.make(CopySource, copy).pipe(
        Context.add(PlanSource, { table: copy.table, ...plan }),
        Context.add(AfterCopy, { table: copy.table, ...afterCopy })
      ))
  )
