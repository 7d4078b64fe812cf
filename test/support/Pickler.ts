// A small test-only pickler: writes Python-like values with the opcodes of a chosen protocol (0-5), in
// the variants CPython's pickle.py uses (and a few it could), with a memo: a value that is the same JS
// object twice is written once and fetched back with GET, as CPython does for a shared object.
// `rand` picks among equivalent encodings, so one value can be written many ways.

export type Py =
  | { readonly kind: "none" }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "int"; readonly value: bigint }
  | { readonly kind: "float"; readonly value: number }
  | { readonly kind: "str"; readonly value: string }
  | { readonly kind: "bytes"; readonly value: Uint8Array }
  | { readonly kind: "list"; readonly items: ReadonlyArray<Py> }
  | { readonly kind: "tuple"; readonly items: ReadonlyArray<Py> }
  | { readonly kind: "dict"; readonly items: ReadonlyArray<readonly [Py, Py]> }
  | { readonly kind: "set"; readonly items: ReadonlyArray<Py> }
  | { readonly kind: "frozenset"; readonly items: ReadonlyArray<Py> }
  | { readonly kind: "global"; readonly module: string; readonly name: string }
  | { readonly kind: "pref"; readonly pid: Py }
  | { readonly kind: "reduce"; readonly callable: Py; readonly args: Py; readonly state?: Py }

export interface PickleOptions {
  readonly protocol: number
  /** picks among equivalent encodings; default: always the first */
  readonly rand?: () => number
  /** memoize values (PUT / MEMOIZE) and fetch repeated ones (GET); default true */
  readonly memo?: boolean
}

const enc = new TextEncoder()

export class Pickler {
  private readonly out: Array<number> = []
  private readonly memo = new Map<Py, number>()
  private readonly rand: () => number
  private readonly useMemo: boolean
  readonly protocol: number

  constructor(options: PickleOptions) {
    this.protocol = options.protocol
    this.rand = options.rand ?? (() => 0)
    this.useMemo = options.memo ?? true
  }

  /** Appends one pickle (PROTO ... STOP); the memo carries over to the next one, as in a ZODB record. */
  dump(v: Py): this {
    if (this.protocol >= 2) this.out.push(0x80, this.protocol)
    if (this.protocol >= 4 && this.pick(2) === 1) this.raw(0x95, ...u64(0)) // FRAME: a length hint only
    this.save(v)
    this.out.push(0x2e)
    return this
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.out)
  }

  private pick(n: number): number {
    return Math.floor(this.rand() * n) % n
  }

  private raw(...b: Array<number>): void {
    for (const x of b) this.out.push(x)
  }

  private text(op: string, s: string): void {
    this.out.push(op.charCodeAt(0))
    for (const x of enc.encode(s)) this.out.push(x)
    this.out.push(0x0a)
  }

  private save(v: Py): void {
    const seen = this.memo.get(v)
    if (seen !== undefined) return this.get(seen)
    const p = this.protocol
    switch (v.kind) {
      case "none":
        return this.raw(0x4e)
      case "bool":
        if (p >= 2) return this.raw(v.value ? 0x88 : 0x89)
        return this.text("I", v.value ? "01" : "00")
      case "int":
        return this.int(v.value)
      case "float":
        if (p >= 1) return this.raw(0x47, ...f64(v.value))
        return this.text("F", pyRepr(v.value))
      case "str":
        this.str(v.value)
        return this.put(v)
      case "bytes":
        this.bytesOp(v.value)
        return this.put(v)
      case "tuple":
        return this.tuple(v)
      case "list":
        return this.list(v)
      case "dict":
        return this.dict(v)
      case "set":
      case "frozenset":
        return this.set(v)
      case "global":
        if (p >= 4 && this.pick(2) === 1) {
          this.str(v.module)
          this.str(v.name)
          this.raw(0x93)
        } else {
          this.global(v.module, v.name)
        }
        return this.put(v)
      case "pref":
        if (p === 0 && v.pid.kind === "str" && !v.pid.value.includes("\n")) return this.text("P", v.pid.value)
        this.save(v.pid)
        return this.raw(0x51)
      case "reduce":
        this.save(v.callable)
        this.save(v.args)
        this.raw(0x52)
        this.put(v)
        if (v.state !== undefined) {
          this.save(v.state)
          this.raw(0x62)
        }
        return
    }
  }

  private global(module: string, name: string): void {
    this.out.push(0x63, ...enc.encode(module), 0x0a, ...enc.encode(name), 0x0a)
  }

  private put(v: Py): void {
    if (!this.useMemo || this.pick(4) === 3) return // not every value is memoized
    const idx = this.memo.size
    this.memo.set(v, idx)
    if (this.protocol >= 4 && this.pick(2) === 0) return this.raw(0x94) // MEMOIZE: index = memo size
    if (this.protocol === 0) return this.text("p", String(idx))
    if (idx < 256 && this.pick(2) === 0) return this.raw(0x71, idx)
    this.raw(0x72, ...u32(idx))
  }

  private get(idx: number): void {
    if (this.protocol === 0) return this.text("g", String(idx))
    if (idx < 256 && this.pick(2) === 0) return this.raw(0x68, idx)
    this.raw(0x6a, ...u32(idx))
  }

  private int(n: bigint): void {
    const p = this.protocol
    if (p >= 1 && n >= 0n && n < 256n && this.pick(3) !== 0) return this.raw(0x4b, Number(n))
    if (p >= 1 && n >= 0n && n < 65536n && this.pick(2) === 0) return this.raw(0x4d, ...u16(Number(n)))
    if (p >= 1 && n >= -(2n ** 31n) && n < 2n ** 31n && this.pick(2) === 0) return this.raw(0x4a, ...i32(Number(n)))
    if (p >= 2) {
      const b = twosComplementLE(n)
      if (b.length < 256 && this.pick(3) !== 0) return this.raw(0x8a, b.length, ...b)
      return this.raw(0x8b, ...i32(b.length), ...b)
    }
    if (n >= -(2n ** 63n) && n < 2n ** 63n && this.pick(2) === 0) return this.text("I", n.toString())
    this.text("L", n.toString() + (this.pick(2) === 0 ? "L" : ""))
  }

  private str(s: string): void {
    const p = this.protocol
    const b = encodeSurrogatePass(s)
    if (p === 0) {
      // CPython: these would end or confuse the line, so they go as \u escapes
      const esc = s.replace(/\\/g, "\\u005c").replace(/\0/g, "\\u0000").replace(/\n/g, "\\u000a").replace(
        /\r/g,
        "\\u000d"
      ).replace(/\x1a/g, "\\u001a")
      this.out.push(0x56)
      for (const x of rawUnicodeEscape(esc)) this.out.push(x)
      this.out.push(0x0a)
      return
    }
    if (p >= 4 && b.length < 256 && this.pick(3) !== 0) return this.raw(0x8c, b.length, ...b)
    if (p >= 4 && this.pick(4) === 0) return this.raw(0x8d, ...u64(b.length), ...b)
    this.raw(0x58, ...u32(b.length), ...b)
  }

  /** bytes; below protocol 3 as a Python 2 str (which decodes as bytes too) */
  private bytesOp(b: Uint8Array): void {
    const p = this.protocol
    if (p >= 3) {
      if (b.length < 256 && this.pick(2) === 0) return this.raw(0x43, b.length, ...b)
      if (p >= 4 && this.pick(3) === 0) return this.raw(0x8e, ...u64(b.length), ...b)
      return this.raw(0x42, ...u32(b.length), ...b)
    }
    if (p >= 1) {
      if (b.length < 256 && this.pick(2) === 0) return this.raw(0x55, b.length, ...b)
      return this.raw(0x54, ...i32(b.length), ...b)
    }
    let lit = "'"
    for (const x of b) {
      lit += x === 0x27 ? "\\'" : x === 0x5c ? "\\\\" : x >= 0x20 && x < 0x7f ? String.fromCharCode(x)
        : "\\x" + x.toString(16).padStart(2, "0")
    }
    this.text("S", lit + "'")
  }

  private items(items: ReadonlyArray<Py>): void {
    for (const x of items) this.save(x)
  }

  private tuple(v: Extract<Py, { kind: "tuple" }>): void {
    const p = this.protocol
    const n = v.items.length
    if (n === 0 && p >= 1) this.raw(0x29)
    else if (p >= 2 && n <= 3 && this.pick(3) !== 0) {
      this.items(v.items)
      this.raw(0x84 + n)
    } else {
      this.raw(0x28)
      this.items(v.items)
      this.raw(0x74)
    }
    this.put(v)
  }

  private list(v: Extract<Py, { kind: "list" }>): void {
    if (this.protocol === 0 || this.pick(4) === 0) {
      // MARK LIST, then APPEND each (protocol 0 style)
      this.raw(0x28, 0x6c)
      this.put(v)
      for (const x of v.items) {
        this.save(x)
        this.raw(0x61)
      }
      return
    }
    this.raw(0x5d)
    this.put(v)
    if (v.items.length === 0) return
    if (v.items.length === 1 && this.pick(2) === 0) {
      this.save(v.items[0]!)
      return this.raw(0x61)
    }
    this.raw(0x28)
    this.items(v.items)
    this.raw(0x65)
  }

  private dict(v: Extract<Py, { kind: "dict" }>): void {
    if (this.protocol === 0 || this.pick(4) === 0) {
      this.raw(0x28, 0x64)
      this.put(v)
      for (const [k, x] of v.items) {
        this.save(k)
        this.save(x)
        this.raw(0x73)
      }
      return
    }
    this.raw(0x7d)
    this.put(v)
    if (v.items.length === 0) return
    this.raw(0x28)
    for (const [k, x] of v.items) {
      this.save(k)
      this.save(x)
    }
    this.raw(0x75)
  }

  private set(v: Extract<Py, { kind: "set" | "frozenset" }>): void {
    if (this.protocol >= 4 && this.pick(3) !== 0) {
      if (v.kind === "set") {
        this.raw(0x8f)
        this.put(v)
        if (v.items.length > 0) {
          this.raw(0x28)
          this.items(v.items)
          this.raw(0x90)
        }
      } else {
        this.raw(0x28)
        this.items(v.items)
        this.raw(0x91)
        this.put(v)
      }
      return
    }
    // protocol 3 and below: builtins.set([...]) by REDUCE
    this.global("builtins", v.kind)
    if (this.protocol >= 2) {
      this.list({ kind: "list", items: v.items })
      this.raw(0x85)
    } else {
      this.raw(0x28)
      this.list({ kind: "list", items: v.items })
      this.raw(0x74)
    }
    this.raw(0x52)
    this.put(v)
  }
}

/** One pickle of `v`. */
export const pickle = (v: Py, options: PickleOptions): Uint8Array => new Pickler(options).dump(v).bytes()

const u16 = (n: number) => [n & 0xff, (n >> 8) & 0xff]
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]
const i32 = (n: number) => u32(n >>> 0)
const u64 = (n: number) => [...u32(n % 2 ** 32), ...u32(Math.floor(n / 2 ** 32))]
const f64 = (x: number) => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setFloat64(0, x, false)
  return [...b]
}

/** Minimal little-endian two's complement, as LONG1/LONG4 (0 is no bytes). */
const twosComplementLE = (n: bigint): Array<number> => {
  if (n === 0n) return []
  const out: Array<number> = []
  let x = n
  for (;;) {
    out.push(Number(BigInt.asUintN(8, x)))
    x >>= 8n
    const top = out[out.length - 1]! & 0x80
    if ((x === 0n && top === 0) || (x === -1n && top !== 0)) return out
  }
}

const encodeSurrogatePass = (s: string): Array<number> => {
  const out: Array<number> = []
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i)
    if (cp >= 0xd800 && cp <= 0xdbff) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (d - 0xdc00)
        i++
      }
    }
    if (cp < 0x80) out.push(cp)
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f))
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f))
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f))
  }
  return out
}

/** Python's 'raw-unicode-escape' encoding: latin-1, and \uXXXX / \UXXXXXXXX beyond it. */
const rawUnicodeEscape = (s: string): Array<number> => {
  const out: Array<number> = []
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i)
    if (cp >= 0xd800 && cp <= 0xdbff) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (d - 0xdc00)
        i++
      }
    }
    if (cp < 0x100) out.push(cp)
    else if (cp < 0x10000) out.push(...enc.encode("\\u" + cp.toString(16).padStart(4, "0")))
    else out.push(...enc.encode("\\U" + cp.toString(16).padStart(8, "0")))
  }
  return out
}

/** Python's float repr, as protocol 0's FLOAT writes it (any round-trip text would do). */
const pyRepr = (x: number): string => {
  if (Number.isNaN(x)) return "nan"
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf"
  if (Object.is(x, -0)) return "-0.0"
  const s = String(x)
  return /[.e]/.test(s) ? s : s + ".0"
}
