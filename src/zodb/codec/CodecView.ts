/**
 * How zodb-json-codec sees an object node. The codec folds construction and BUILD into one value:
 * without BUILD an object is a "Reduce" (callable, args); with BUILD it is an "Instance" (module,
 * name, state) whose state absorbs the constructor arguments as `{"@args", "@state"}` (or, for a
 * callable that is not a class, `{"@callable", "@args", "@state"}`). Both the JSON writer and the refs
 * walk need this view, in the codec's order.
 */
import { NONE, type PickleValue, type PObject } from "./PickleValue.ts"

/** A dict the codec makes up (its keys are the codec's own "@args", "@state"...). */
export interface Synth {
  readonly kind: "synth"
  readonly pairs: ReadonlyArray<readonly [string, PickleValue | Synth]>
}

export type CodecNode = PickleValue | Synth

/** The Reduce args: NEWOBJ_EX's args and kwargs become `{"@args": args, "@kwargs": kwargs}`. */
export const reduceArgs = (o: PObject): CodecNode =>
  o.op === "newobj_ex" ? { kind: "synth", pairs: [["@args", o.args], ["@kwargs", o.kwargs ?? NONE]] } : o.args

/** The Instance's class (module "" and name "" when the object was not made by a class). */
export const instanceClass = (o: PObject): { readonly module: string; readonly name: string } =>
  o.callable.kind === "global" ? o.callable : NO_CLASS

const NO_CLASS = { module: "", name: "" }

/** True when the Instance state carries constructor arguments the loader cannot give back. */
export const stateHasArgs = (o: PObject): boolean => {
  if (o.rebuilt === true || o.op === "build") return false
  const args = reduceArgs(o)
  return !(args.kind === "tuple" && args.items.length === 0)
}

/** The Instance's state as the codec forms it (`o.state` must be set). */
export const instanceState = (o: PObject): CodecNode => {
  const state = o.state!
  if (o.rebuilt === true) return state
  if (o.op === "build") {
    return o.callable.kind === "global" ? state : { kind: "synth", pairs: [["@obj", o.callable], ["@state", state]] }
  }
  const args = reduceArgs(o)
  if (o.callable.kind === "global") {
    return args.kind === "tuple" && args.items.length === 0
      ? state
      : { kind: "synth", pairs: [["@args", args], ["@state", state]] }
  }
  return { kind: "synth", pairs: [["@callable", o.callable], ["@args", args], ["@state", state]] }
}
