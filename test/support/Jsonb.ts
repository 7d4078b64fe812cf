// jsonb equality without PostgreSQL, for comparing the codec's JSON with ours in unit tests.
//
// jsonb semantics: object key order does not matter and a duplicate key keeps its last value; numbers
// compare as exact decimals (1.0 = 1, 1e16 = 10000000000000000, -0.0 = 0). On top of that,
// `compareJsonb` reports where the expected text wrote a float (a "." or an exponent) and the actual
// text did not: jsonb's `=` cannot see that, but Python reads the two back as float and int.

export type J =
  | null
  | boolean
  | string
  | { readonly num: string }
  | ReadonlyArray<J>
  | ReadonlyMap<string, J>

/** Parses JSON text, keeping each number's text. Throws on anything that is not JSON. */
export const parseJson = (text: string): J => {
  let i = 0
  const fail = (what: string): never => {
    throw new Error(`JSON: ${what} at ${i}: ${JSON.stringify(text.slice(i, i + 30))}`)
  }
  const ws = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\n" || text[i] === "\r" || text[i] === "\t")) i++
  }
  const value = (): J => {
    ws()
    const c = text[i]
    if (c === "{") {
      i++
      const m = new Map<string, J>()
      ws()
      if (text[i] === "}") {
        i++
        return m
      }
      for (;;) {
        ws()
        if (text[i] !== '"') fail("expected a key")
        const k = str()
        ws()
        if (text[i++] !== ":") fail("expected :")
        m.delete(k) // last one wins, and goes last
        m.set(k, value())
        ws()
        if (text[i] === ",") {
          i++
          continue
        }
        if (text[i++] !== "}") fail("expected , or }")
        return m
      }
    }
    if (c === "[") {
      i++
      const a: Array<J> = []
      ws()
      if (text[i] === "]") {
        i++
        return a
      }
      for (;;) {
        a.push(value())
        ws()
        if (text[i] === ",") {
          i++
          continue
        }
        if (text[i++] !== "]") fail("expected , or ]")
        return a
      }
    }
    if (c === '"') return str()
    if (text.startsWith("true", i)) return (i += 4, true)
    if (text.startsWith("false", i)) return (i += 5, false)
    if (text.startsWith("null", i)) return (i += 4, null)
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400_000))
    if (m === null) return fail("unexpected character")
    i += m[0].length
    return { num: m[0] }
  }
  const str = (): string => {
    i++ // opening quote
    let s = ""
    for (;;) {
      const c = text[i++]
      if (c === undefined) fail("unterminated string")
      if (c === '"') return s
      if (c! < " ") fail("raw control character in a string")
      if (c !== "\\") {
        s += c
        continue
      }
      const e = text[i++]
      if (e === "u") {
        const h = text.slice(i, i + 4)
        if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape")
        s += String.fromCharCode(parseInt(h, 16))
        i += 4
      } else {
        const map: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }
        const r = map[e!]
        if (r === undefined) fail("bad escape")
        s += r
      }
    }
  }
  const v = value()
  ws()
  if (i !== text.length) fail("trailing text")
  return v
}

/** A number as (sign, digits without leading/trailing zeros, exponent): equal values, equal keys. */
const numericKey = (text: string): string => {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!
  const digits = (m[2]! + (m[3] ?? "")).replace(/^0+/, "")
  if (digits === "" || /^0*$/.test(digits)) return "0"
  const exp = Number(m[4] ?? "0") - (m[3]?.length ?? 0)
  const trimmed = digits.replace(/0+$/, "")
  return `${m[1]}${trimmed}e${exp + (digits.length - trimmed.length)}`
}

const isFloatText = (t: string): boolean => /[.eE]/.test(t)

export interface JsonbComparison {
  readonly equal: boolean
  /** the first place where the values differ */
  readonly difference?: string
  /** places where `expected` has a float and `actual` an integer-looking number */
  readonly lostFloats: ReadonlyArray<string>
}

export const compareJsonb = (expectedText: string, actualText: string): JsonbComparison => {
  const lostFloats: Array<string> = []
  let difference: string | undefined
  const walk = (a: J, b: J, path: string): boolean => {
    const differ = (what: string) => {
      difference ??= `${path === "" ? "/" : path}: ${what}`
      return false
    }
    if (a === null || typeof a === "boolean" || typeof a === "string") return a === b || differ(`${show(a)} vs ${show(b)}`)
    if (b === null || typeof b !== "object") return differ(`${show(a)} vs ${show(b)}`)
    if (Array.isArray(a)) {
      if (!Array.isArray(b)) return differ("array vs non-array")
      if (a.length !== b.length) return differ(`array of ${a.length} vs ${b.length}`)
      let ok = true
      for (let k = 0; k < a.length; k++) ok = walk(a[k]!, (b as ReadonlyArray<J>)[k]!, `${path}/${k}`) && ok
      return ok
    }
    if (a instanceof Map) {
      if (!(b instanceof Map)) return differ("object vs non-object")
      if (a.size !== b.size) return differ(`object of ${a.size} vs ${b.size} keys`)
      let ok = true
      for (const [k, v] of a) {
        if (!b.has(k)) return differ(`key ${JSON.stringify(k)} missing`)
        ok = walk(v, b.get(k)!, `${path}/${k}`) && ok
      }
      return ok
    }
    const an = a as { readonly num: string }
    if (b instanceof Map || Array.isArray(b) || !("num" in (b as object))) return differ(`${an.num} vs ${show(b)}`)
    const bn = b as { readonly num: string }
    if (isFloatText(an.num) && !isFloatText(bn.num)) lostFloats.push(path === "" ? "/" : path)
    return numericKey(an.num) === numericKey(bn.num) || differ(`${an.num} vs ${bn.num}`)
  }
  const equal = walk(parseJson(expectedText), parseJson(actualText), "")
  return difference === undefined ? { equal, lostFloats } : { equal, difference, lostFloats }
}

const show = (v: J): string =>
  v === null || typeof v !== "object" ? JSON.stringify(v) : Array.isArray(v) ? "array" : v instanceof Map ? "object" : (v as { num: string }).num

/**
 * Why PostgreSQL would refuse `text` as jsonb, or undefined: it must be JSON, and its strings may hold
 * neither \u0000 nor a lone surrogate.
 */
export const jsonbRefusal = (text: string): string | undefined => {
  let v: J
  try {
    v = parseJson(text)
  } catch (e) {
    return String(e)
  }
  const bad = (s: string): string | undefined => {
    if (s.includes("\0")) return `string with \\u0000: ${JSON.stringify(s.slice(0, 40))}`
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s)) return "lone surrogate"
    return undefined
  }
  const walk = (x: J): string | undefined => {
    if (typeof x === "string") return bad(x)
    if (x === null || typeof x !== "object") return undefined
    if (Array.isArray(x)) {
      for (const y of x) {
        const r = walk(y)
        if (r !== undefined) return r
      }
      return undefined
    }
    if (x instanceof Map) {
      for (const [k, y] of x) {
        const r = bad(k) ?? walk(y)
        if (r !== undefined) return r
      }
    }
    return undefined
  }
  return walk(v)
}
