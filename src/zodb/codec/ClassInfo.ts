/**
 * class_mod / class_name of a record from its class pickle (ZODB serialize.py's class metadata):
 * a class (GLOBAL), (class, newargs), ((module, name), args) or (module, name).
 *
 * zodb-json-codec's `extract_class_info` reads the first, ((module, name), x) and (module, name) with
 * str parts; anything else gives "" and "". zodb-pgjsonb's loader writes class metadata back as
 * ((class_mod, class_name), None), so newargs never survive the trip.
 */
import { ClassPickleError } from "./CodecErrors.ts"
import type { Loss } from "./Loss.ts"
import type { PickleValue } from "./PickleValue.ts"
import type { CodecMode } from "./StateJson.ts"

export interface ClassInfo {
  readonly module: string
  readonly name: string
  readonly loss?: Loss
}

export const classInfo = (v: PickleValue, mode: CodecMode, offset: number): ClassInfo => {
  const faithful = mode === "faithful"
  if (v.kind === "global") return { module: v.module, name: v.name }
  if (v.kind === "tuple" && v.items.length === 2) {
    const [klass, args] = v.items as [PickleValue, PickleValue]
    if (klass.kind === "global") {
      // format #2 (class, newargs) or #5 (class, None): the codec gives ""
      const noArgs = args.kind === "none" || (args.kind === "tuple" && args.items.length === 0)
      const repaired = faithful && noArgs
      const loss: Loss = {
        reason: "class-lost",
        detail: `class pickle is (klass, newargs) = (${klass.module}.${klass.name}, ${describe(args)}): ` +
          `codec gives class_mod/class_name ""` + (noArgs ? "" : "; the loader cannot keep newargs"),
        repaired
      }
      return repaired ? { module: klass.module, name: klass.name, loss } : { module: "", name: "", loss }
    }
    if (klass.kind === "tuple" && klass.items.length === 2) {
      // formats #3/#4/#7 ((module, name), args)
      const [m, n] = klass.items as [PickleValue, PickleValue]
      const module = m.kind === "str" ? m.value : ""
      const name = n.kind === "str" ? n.value : ""
      const noArgs = args.kind === "none" || (args.kind === "tuple" && args.items.length === 0)
      if ((m.kind === "str" || m.kind === "bytes") && (n.kind === "str" || n.kind === "bytes")) {
        if (m.kind === "str" && n.kind === "str") {
          return noArgs ? { module, name } : {
            module,
            name,
            loss: {
              reason: "class-lost",
              detail: `class metadata ((${module}, ${name}), ${describe(args)}): the loader cannot keep the args`,
              repaired: false
            }
          }
        }
        // Python 2 strings: the codec wants str
        const pm = asciiText(m)
        const pn = asciiText(n)
        const repaired = faithful && noArgs && pm !== undefined && pn !== undefined
        const loss: Loss = {
          reason: "class-lost",
          detail: `class metadata ((module, name), ...) holds Python 2 strings: codec gives class_mod/class_name ""`,
          repaired
        }
        return repaired ? { module: pm!, name: pn!, loss } : { module, name, loss }
      }
    }
    if (klass.kind === "str" && (args.kind === "str" || args.kind === "bytes")) {
      return { module: klass.value, name: args.kind === "str" ? args.value : "" }
    }
  }
  throw new ClassPickleError({ offset, found: describe(v) })
}

const asciiText = (v: PickleValue): string | undefined => {
  if (v.kind === "str") return v.value
  if (v.kind !== "bytes") return undefined
  let s = ""
  for (const b of v.value) {
    if (b >= 0x80) return undefined
    s += String.fromCharCode(b)
  }
  return s
}

/** A short description of a value for messages: three levels deep at most (a memo-shared tuple repeats). */
const describe = (v: PickleValue, depth = 0): string => {
  switch (v.kind) {
    case "none":
      return "None"
    case "global":
      return `${v.module}.${v.name}`
    case "tuple":
      return v.items.length <= 3 && depth < 3
        ? `(${v.items.map((item) => describe(item, depth + 1)).join(", ")}${v.items.length === 1 ? "," : ""})`
        : "tuple"
    case "str":
      return JSON.stringify(v.value.length > 40 ? v.value.slice(0, 40) + "..." : v.value)
    case "int":
      return String(v.value)
    default:
      return v.kind
  }
}
