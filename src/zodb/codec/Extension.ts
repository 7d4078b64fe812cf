/**
 * A transaction's extension (a pickled dict, or no bytes) as zodb-pgjsonb stores it in
 * transaction_log.extension: `_serialize_extension` unpickles it (ZODB's loads: Python 2 str as str
 * when ASCII, else bytes) and writes Python's `json.dumps(ext)` with every default (ensure_ascii,
 * ", " and ": " separators, insertion order, tuples as lists, True/None as true/null, floats as repr,
 * NaN/Infinity as is), UTF-8 encoded. An empty dict, or anything that is not a dict, gives no bytes.
 * What json.dumps cannot encode (bytes, sets, objects, tuple keys, ints over 4300 digits, cycles) keeps
 * the raw pickle bytes, as zodb-pgjsonb does for its bytes input.
 *
 * One deliberate difference: a pickle that does not decode at all also keeps its raw bytes, where
 * zodb-pgjsonb would stop (pickle.UnpicklingError is not among the exceptions it catches), and so
 * does one whose shared values unfold past a million values (json.dumps would write every copy).
 */
import { PickleError } from "./CodecErrors.ts"
import { pythonFloatRepr } from "./FloatFormat.ts"
import { PickleReader } from "./Pickle.ts"
import type { PickleValue } from "./PickleValue.ts"
import { unfoldLimits } from "./StateJson.ts"

/** Python 3.11's int-to-str limit: json.dumps raises ValueError beyond it. */
const MAX_INT_DIGITS = 4300

/** Signals a value json.dumps refuses (TypeError/ValueError in Python). */
class NotJson extends Error {}

export const extensionBytes = (ext: Uint8Array): Uint8Array => {
  if (ext.length === 0) return new Uint8Array(0)
  let value: PickleValue
  try {
    value = new PickleReader(ext).next()
  } catch (e) {
    if (e instanceof PickleError) return ext
    throw e
  }
  if (value.kind !== "dict") return new Uint8Array(0)
  try {
    const dict = pyDict(value.items)
    if (dict.size === 0) return new Uint8Array(0)
    // a DAG shared through the memo unfolds as a tree, so the values written are counted (as in StateJson)
    return new TextEncoder().encode(dumpDict(dict, { left: unfoldLimits(ext.length).values }))
  } catch (e) {
    // RangeError: text past V8's string limit, or nesting past the stack (json.dumps would fail too)
    if (e instanceof NotJson || e instanceof RangeError) return ext
    throw e
  }
}

/** A dict as Python builds it: equal keys (1 == 1.0 == True) collapse, first key kept, last value wins. */
const pyDict = (items: ReadonlyArray<PickleValue>): Map<string, { key: PickleValue; value: PickleValue }> => {
  const m = new Map<string, { key: PickleValue; value: PickleValue }>()
  for (let i = 0; i < items.length; i += 2) {
    const key = items[i]!
    const id = keyId(key)
    const had = m.get(id)
    if (had === undefined) m.set(id, { key, value: items[i + 1]! })
    else had.value = items[i + 1]!
  }
  return m
}

const keyId = (k: PickleValue): string => {
  switch (k.kind) {
    case "str":
      return "s" + k.value
    case "bytes":
      return k.py2 === true && isAscii(k.value) ? "s" + latin1(k.value) : "b" + latin1(k.value)
    case "none":
      return "none"
    case "bool":
      return "n" + (k.value ? "1" : "0")
    case "int":
      return "n" + String(k.value)
    case "float":
      return Number.isInteger(k.value) && Math.abs(k.value) < 2 ** 53 ? "n" + String(k.value === 0 ? 0 : k.value)
        : Number.isNaN(k.value) ? "nan" + Math.random() // NaN != NaN: never the same key
        : "f" + String(k.value)
    default:
      throw new NotJson() // unhashable or not a json key type; either way json.dumps never writes it
  }
}

/** Values still to write before the extension counts as unfolding without end (then it is kept as pickled). */
interface Budget {
  left: number
}

const dumpDict = (m: ReadonlyMap<string, { key: PickleValue; value: PickleValue }>, budget: Budget): string => {
  if (m.size === 0) return "{}"
  const parts: Array<string> = []
  for (const { key, value } of m.values()) parts.push(dumpKey(key) + ": " + dump(value, budget))
  return "{" + parts.join(", ") + "}"
}

/** json.dumps's key conversion: str as is; int, float, bool and None to their JSON text. */
const dumpKey = (k: PickleValue): string => {
  switch (k.kind) {
    case "str":
      return asciiJson(k.value)
    case "bytes":
      if (k.py2 === true && isAscii(k.value)) return asciiJson(latin1(k.value))
      throw new NotJson()
    case "none":
      return '"null"'
    case "bool":
      return k.value ? '"true"' : '"false"'
    case "int":
      return '"' + intText(k.value) + '"'
    case "float":
      return '"' + floatText(k.value) + '"'
    default:
      throw new NotJson()
  }
}

const dump = (v: PickleValue, budget: Budget): string => {
  if ((v as { memoCopy?: true }).memoCopy === true) throw new NotJson() // a container inside itself
  if (--budget.left < 0) throw new NotJson()
  switch (v.kind) {
    case "none":
      return "null"
    case "bool":
      return v.value ? "true" : "false"
    case "int":
      return intText(v.value)
    case "float":
      return floatText(v.value)
    case "str":
      return asciiJson(v.value)
    case "bytes":
      // a Python 2 str that ZODB's loads reads as str
      if (v.py2 === true && isAscii(v.value)) return asciiJson(latin1(v.value))
      throw new NotJson()
    case "list":
    case "tuple":
      return v.items.length === 0 ? "[]" : "[" + v.items.map((item) => dump(item, budget)).join(", ") + "]"
    case "dict":
      return dumpDict(pyDict(v.items), budget)
    default:
      throw new NotJson()
  }
}

const intText = (v: number | bigint): string => {
  const s = String(v)
  if (s.replace("-", "").length > MAX_INT_DIGITS) throw new NotJson()
  return s
}

const floatText = (x: number): string =>
  Number.isNaN(x) ? "NaN" : x === Infinity ? "Infinity" : x === -Infinity ? "-Infinity" : pythonFloatRepr(x)

/** A JSON string with ensure_ascii: everything beyond ASCII (and control characters) as \uXXXX. */
const asciiJson = (s: string): string => {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x22) out += '\\"'
    else if (c === 0x5c) out += "\\\\"
    else if (c === 0x0a) out += "\\n"
    else if (c === 0x0d) out += "\\r"
    else if (c === 0x09) out += "\\t"
    else if (c === 0x08) out += "\\b"
    else if (c === 0x0c) out += "\\f"
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0")
    else out += s[i]
  }
  return out + '"'
}

const isAscii = (b: Uint8Array): boolean => b.every((x) => x < 0x80)

const latin1 = (b: Uint8Array): string => {
  let s = ""
  for (const x of b) s += String.fromCharCode(x)
  return s
}
