/**
 * The oids a state references, for zodb-pgjsonb's `refs` column (pure-SQL pack follows them).
 *
 * `codecRefs` is zodb-json-codec's `collect_refs_from_pickle_value`: every persistent reference whose
 * id is a tuple starting with 8 bytes, in its walk order, duplicates kept. `refs` adds what the codec
 * misses but ZODB's `referencesf` counts: bare-oid references (`BINPERSID` of the oid alone, written for
 * classes with `__getnewargs__`). Like `referencesf`, both leave out weak references ["w", ...] and
 * multi-database references ["m"/"n", ...]: they must not keep their target alive.
 */
import { StateError } from "./CodecErrors.ts"
import { instanceState, reduceArgs, type CodecNode } from "./CodecView.ts"
import type { PickleValue } from "./PickleValue.ts"
import { unfoldLimits } from "./StateJson.ts"

export interface StateRefs {
  readonly codecRefs: Array<bigint>
  readonly refs: Array<bigint>
  /** the bare oids found (also in `refs`) */
  readonly bareOids: Array<bigint>
}

/** The walk goes as deep as the JSON writer allows, and no deeper. */
const MAX_DEPTH = 1100

/** `recordBytes` sets the same unfold limit as the JSON writer's: a shared DAG is walked as a tree. */
export const collectRefs = (state: PickleValue, offset: number, recordBytes: number): StateRefs => {
  const out: StateRefs = { codecRefs: [], refs: [], bareOids: [] }
  const budget = { left: unfoldLimits(recordBytes).values, offset }
  walk(state, out, 0, budget)
  return out
}

interface Budget {
  left: number
  readonly offset: number
}

const walk = (v: CodecNode, out: StateRefs, depth: number, budget: Budget): void => {
  const offset = budget.offset
  if (depth > MAX_DEPTH) throw new StateError({ offset, path: "", problem: "maximum nesting depth exceeded" })
  if (--budget.left < 0) {
    throw new StateError({ offset, path: "", problem: "the state unfolds to too many values (sub-objects shared through the pickle memo)" })
  }
  const d = depth + 1
  switch (v.kind) {
    case "pref": {
      const pid = v.pid
      if (pid.kind === "tuple") {
        const oid = pid.items[0]
        if (oid !== undefined && oid.kind === "bytes" && oid.value.length === 8) {
          const n = oidOf(oid.value)
          out.codecRefs.push(n)
          out.refs.push(n)
        }
      } else if (pid.kind === "bytes" && pid.value.length === 8) {
        const n = oidOf(pid.value)
        out.refs.push(n)
        out.bareOids.push(n)
      }
      return
    }
    case "list":
    case "tuple":
    case "set":
    case "frozenset":
    case "dict":
      for (const item of v.items) walk(item, out, d, budget)
      return
    case "synth":
      for (const [, item] of v.pairs) walk(item, out, d, budget)
      return
    case "object":
      // the codec's order: Instance state (with its args) or Reduce args, then dict items, then list items
      walk(v.state === undefined ? reduceArgs(v) : instanceState(v), out, d, budget)
      if (v.dictItems !== undefined) for (const item of v.dictItems) walk(item, out, d, budget)
      if (v.listItems !== undefined) for (const item of v.listItems) walk(item, out, d, budget)
      return
    default:
      return
  }
}

/** An 8-byte oid as the signed big-endian i64 zodb-pgjsonb stores. */
export const oidOf = (b: Uint8Array): bigint => new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, false)
