/**
 * The JSON text of a record's state, as zodb-json-codec 1.6.1's `pickle_value_to_json_string_pg`
 * writes it (mode "codec"), or with the codec's lossy spots replaced by forms that zodb-pgjsonb's loader
 * turns back into the original object (mode "faithful"). docs/zodb-codec.md lists every marker and every
 * replacement; LossTally records what the codec form loses.
 */
import { classifyBTree, type BTreeClass } from "./BTrees.ts"
import { StateError } from "./CodecErrors.ts"
import { type CodecNode, instanceClass, instanceState, reduceArgs, stateHasArgs, type Synth } from "./CodecView.ts"
import { positionalFloat, ryuFormat } from "./FloatFormat.ts"
import { base64, base64Utf8, hex, quote } from "./JsonText.ts"
import type { Loss } from "./Loss.ts"
import type { PBytes, PGlobal, PickleValue, PObject, PStr, PTuple } from "./PickleValue.ts"

export type CodecMode = "codec" | "faithful"

/** The codec refuses deeper nesting ("maximum nesting depth exceeded"). */
const MAX_DEPTH = 1000
/**
 * A memo-shared DAG (DUP, memo GETs of tuples) unfolds into a tree that can double per pickle byte: a
 * 100-byte record would need terabytes. The codec writes every copy out; past these limits the state is
 * refused (a StateError naming the record) instead of exhausting memory. Each scales with the record, so
 * real records (sharing repeats a sub-object a few times) are far inside them.
 */
export const unfoldLimits = (recordBytes: number) => ({
  values: 1_000_000 + 16 * recordBytes,
  // a memoized string repeated is one value but many characters (a 4 KiB text 5,000 times: 20 MB)
  jsonLength: 256 * 1024 * 1024
})

/** Keys the loader reads as markers in a dict of at most 4 keys ("@ns" only alone: _unsanitize_from_pg). */
const LOADER_MARKERS = new Set([
  "@ref", "@t", "@b", "@cls", "@dt", "@date", "@time", "@td", "@dec", "@bi", "@d", "@set", "@fset", "@pkl",
  "@uuid", "@reduce"
])

const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

/** What the codec form loses, counted while writing; `losses()` turns it into Loss values. */
export class LossTally {
  nan = 0
  infinite = 0
  negativeZero = 0
  readonly integralFloats = new Set<string>()
  readonly sharedPaths: Array<string> = []
  pytzUtc = 0
  tzSeconds = 0
  nulKeys = 0
  readonly markerKeyPaths: Array<string> = []
  readonly itemsKept: Array<string> = []
  readonly itemsDropped: Array<string> = []
  readonly argsDropped: Array<string> = []
  readonly argsKept: Array<string> = []
  py2Str = 0
  misreads = 0
  weakSameDb = 0
  weakOtherDb = 0
  /** places noted past the first 20 of a list: counted, not kept (a shared DAG can visit millions) */
  private readonly beyond = new Map<Array<string>, number>()

  /** Notes a place in `list`; `what` is only computed for the first 20. */
  keep(list: Array<string>, what: () => string): void {
    if (list.length < 20) list.push(what())
    else this.beyond.set(list, (this.beyond.get(list) ?? 0) + 1)
  }

  private listed(separator: string, ...lists: Array<Array<string>>): string {
    const more = lists.reduce((n, l) => n + (this.beyond.get(l) ?? 0), 0)
    return lists.flat().join(separator) + (more > 0 ? `${separator}... and ${more} more` : "")
  }

  losses(mode: CodecMode): Array<Loss> {
    const f = mode === "faithful"
    const out: Array<Loss> = []
    if (this.nan + this.infinite > 0) {
      out.push({
        reason: "float-nan-inf",
        detail: `${this.nan} NaN and ${this.infinite} +/-inf float(s) written as null`,
        repaired: f
      })
    }
    for (const text of this.integralFloats) {
      out.push({
        reason: "float-integral",
        detail: `float ${text}: jsonb stores the integer ${shorten(positionalFloat(Number(text)).slice(0, -2))}`,
        repaired: f
      })
    }
    if (this.negativeZero > 0) {
      out.push({ reason: "float-negative-zero", detail: "float -0.0: jsonb numeric stores 0.0 (sign of zero lost)", repaired: f })
    }
    if (this.sharedPaths.length > 0) {
      out.push({
        reason: "shared-object",
        detail: `shared mutable sub-object(s) (pickle memo) duplicated at ${this.listed(",", this.sharedPaths)}`,
        repaired: false
      })
    }
    if (this.pytzUtc > 0) {
      out.push({
        reason: "pytz-utc",
        detail: `${this.pytzUtc} datetime(s) with pytz.utc tzinfo: written like datetime.timezone.utc (+00:00), pytz-ness lost`,
        repaired: f
      })
    }
    if (this.tzSeconds > 0) {
      out.push({
        reason: "tz-offset-seconds",
        detail: `${this.tzSeconds} tz offset(s) with seconds or microseconds written as hours:minutes`,
        repaired: f
      })
    }
    if (this.nulKeys > 0) {
      out.push({
        reason: "nul-key",
        detail: `${this.nulKeys} dict key(s) with \\0 written as "@ns:" keys, which the loader does not decode`,
        repaired: f
      })
    }
    if (this.markerKeyPaths.length > 0) {
      out.push({
        reason: "marker-key",
        detail: `dict(s) whose keys the loader reads as markers at ${this.listed(",", this.markerKeyPaths)}`,
        repaired: f
      })
    }
    if (this.itemsKept.length + this.itemsDropped.length > 0) {
      out.push({
        reason: "object-items",
        detail: `items set/appended on ${this.listed(", ", this.itemsKept, this.itemsDropped)}: the loader ignores "items"/"@items"`,
        repaired: f && this.itemsDropped.length === 0
      })
    }
    if (this.argsKept.length + this.argsDropped.length > 0) {
      out.push({
        reason: "object-args",
        detail: `constructor arguments of ${
          this.listed(", ", this.argsKept, this.argsDropped)
        }: the loader rebuilds the object without them`,
        repaired: f && this.argsDropped.length === 0
      })
    }
    if (this.py2Str > 0) {
      out.push({
        reason: "py2-str",
        detail: `${this.py2Str} Python 2 str(s) written as bytes (ZODB on Python 3 reads ASCII ones as str)`,
        repaired: false
      })
    }
    if (this.misreads > 0) {
      out.push({
        reason: "codec-misreads",
        detail: `${this.misreads} protocol-0 STRING/UNICODE value(s) that the codec does not unescape`,
        repaired: f
      })
    }
    if (this.weakSameDb + this.weakOtherDb > 0) {
      out.push({
        reason: "weak-ref",
        detail: `${this.weakSameDb + this.weakOtherDb} persistent weak reference(s) ["w", (oid,)] not in refs ` +
          "(ZODB's referencesf leaves them out too); the codec's form makes zodb-pgjsonb's loader fail",
        repaired: f && this.weakOtherDb === 0
      })
    }
    return out
  }
}

export interface StateJsonOptions {
  readonly mode: CodecMode
  /** the state pickle's offset in the record, for errors */
  readonly offset: number
  /** look for objects reached twice (only needed when the pickle's memo handed out a mutable object) */
  readonly trackShared: boolean
  /** the whole record's byte length, which sets the unfold limits */
  readonly recordBytes: number
}

/** Writes the JSON text of `state` for a record of class (module, name). */
export const stateJson = (
  state: PickleValue,
  module: string,
  name: string,
  options: StateJsonOptions,
  tally: LossTally
): string => {
  const w = new Writer(options, tally)
  const info = classifyBTree(module, name)
  if (info === undefined) w.value(state)
  else w.btree(info, state)
  return w.out
}

class Writer {
  out = ""
  private depth = 0
  private readonly path: Array<string | number> = []
  private readonly seen: Set<PickleValue> | undefined
  private readonly faithful: boolean
  private values = 0
  private readonly limits: ReturnType<typeof unfoldLimits>

  constructor(private readonly options: StateJsonOptions, private readonly tally: LossTally) {
    this.faithful = options.mode === "faithful"
    this.limits = unfoldLimits(options.recordBytes)
    this.seen = options.trackShared ? new Set() : undefined
  }

  value(v: PickleValue): void {
    if (++this.depth > MAX_DEPTH + 1) throw this.error("maximum nesting depth exceeded")
    if (++this.values > this.limits.values) throw this.unfolded(`more than ${this.limits.values} values`)
    switch (v.kind) {
      case "none":
        this.out += "null"
        break
      case "bool":
        this.out += v.value ? "true" : "false"
        break
      case "int":
        this.int(v.value)
        break
      case "float":
        this.float(v.value)
        break
      case "str":
        this.str(v)
        break
      case "bytes":
        this.out += '{"@b":"' + base64(this.bytesOf(v)) + '"}'
        break
      case "list":
        this.visit(v)
        this.array(v.items)
        break
      case "tuple":
        this.out += '{"@t":'
        this.array(v.items)
        this.out += "}"
        break
      case "dict":
        this.visit(v)
        this.dict(v.items)
        break
      case "set":
        this.visit(v)
        this.out += '{"@set":'
        this.array(v.items)
        this.out += "}"
        break
      case "frozenset":
        this.out += '{"@fset":'
        this.array(v.items)
        this.out += "}"
        break
      case "global":
        this.global(v)
        break
      case "pref":
        this.ref(v.pid)
        break
      case "object":
        this.object(v)
        break
    }
    if (this.out.length > this.limits.jsonLength) throw this.unfolded(`JSON longer than ${this.limits.jsonLength} characters`)
    this.depth--
  }

  private node(v: CodecNode): void {
    if (v.kind !== "synth") return this.value(v)
    this.synth(v)
  }

  private synth(v: Synth): void {
    this.out += "{"
    for (let i = 0; i < v.pairs.length; i++) {
      const [k, x] = v.pairs[i]!
      this.out += (i > 0 ? ',"' : '"') + k + '":'
      this.path.push(k)
      this.node(x)
      this.path.pop()
    }
    this.out += "}"
  }

  private array(items: ReadonlyArray<PickleValue>): void {
    this.out += "["
    for (let i = 0; i < items.length; i++) {
      if (i > 0) this.out += ","
      this.path.push(i)
      this.value(items[i]!)
      this.path.pop()
    }
    this.out += "]"
  }

  /** `[[k, v], ...]` from alternating keys and values. */
  private pairs(items: ReadonlyArray<PickleValue>, asTuples: boolean): void {
    this.out += "["
    for (let i = 0; i < items.length; i += 2) {
      this.out += i > 0 ? (asTuples ? ',{"@t":[' : ",[") : (asTuples ? '{"@t":[' : "[")
      this.path.push(i / 2)
      this.value(items[i]!)
      this.out += ","
      this.value(items[i + 1]!)
      this.path.pop()
      this.out += asTuples ? "]}" : "]"
    }
    this.out += "]"
  }

  private int(v: number | bigint): void {
    if (typeof v === "number" || (v >= I64_MIN && v <= I64_MAX)) this.out += String(v)
    else this.out += '{"@bi":"' + v.toString() + '"}'
  }

  private float(x: number): void {
    if (!Number.isFinite(x)) {
      if (Number.isNaN(x)) this.tally.nan++
      else this.tally.infinite++
      if (this.faithful) this.pyFloat(Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf")
      else this.out += "null"
    } else if (x === 0 && Object.is(x, -0)) {
      this.tally.negativeZero++
      if (this.faithful) this.pyFloat("-0.0")
      else this.out += "-0.0"
    } else if (Math.abs(x) >= 1e16) {
      const text = ryuFormat(x)
      this.tally.integralFloats.add(text)
      this.out += this.faithful ? positionalFloat(x) : text
    } else {
      this.out += ryuFormat(x)
    }
  }

  /** float(text) as a reduce: the loader pickles it as REDUCE(builtins.float, (text,)). */
  private pyFloat(text: string): void {
    this.out += '{"@reduce":{"callable":{"@cls":["builtins","float"]},"args":{"@t":["' + text + '"]}}}'
  }

  /** The text to write for a str in this mode; undefined when it holds a lone surrogate. */
  private strText(v: PStr): string | undefined {
    if (v.codec !== undefined && v.codec !== null) {
      this.tally.misreads++
      if (!this.faithful) return v.codec
    }
    return v.surrogates === undefined ? v.value : undefined
  }

  private str(v: PStr): void {
    const s = this.strText(v)
    if (s === undefined) this.surrogateStr(v.surrogates!)
    else if (s.includes("\0")) this.out += '{"@ns":"' + base64Utf8(s) + '"}'
    else this.out += quote(s)
  }

  /** A str with lone surrogates (JSON and PostgreSQL cannot hold them): str(bytes, "utf-8", "surrogatepass"). */
  private surrogateStr(b: Uint8Array): void {
    this.out += '{"@reduce":{"callable":{"@cls":["builtins","str"]},"args":{"@t":[{"@b":"' + base64(b) +
      '"},"utf-8","surrogatepass"]}}}'
  }

  private bytesOf(v: PBytes): Uint8Array {
    if (v.py2 === true) this.tally.py2Str++
    if (v.codec !== undefined) {
      this.tally.misreads++
      if (!this.faithful) return v.codec
    }
    return v.value
  }

  private dict(items: ReadonlyArray<PickleValue>): void {
    const n = items.length / 2
    let strKeys = true
    let asPairs = false
    let markerKey = false
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i]!
      if (k.kind !== "str") {
        strKeys = false
        break
      }
      const text = this.faithful || k.codec === undefined || k.codec === null ? k.value : k.codec
      if (k.surrogates !== undefined && (this.faithful || k.codec === undefined || k.codec === null)) asPairs = true
      if (text.includes("\0")) {
        this.tally.nulKeys++
        if (this.faithful) asPairs = true
      }
      if (n <= 4 && (LOADER_MARKERS.has(text) || (n === 1 && text === "@ns"))) markerKey = true
    }
    if (strKeys && markerKey) {
      this.tally.keep(this.tally.markerKeyPaths, () => this.pathText())
      if (this.faithful) asPairs = true
    }
    if (!strKeys || asPairs) {
      this.out += '{"@d":'
      this.pairs(items, false)
      this.out += "}"
      return
    }
    this.out += "{"
    for (let i = 0; i < items.length; i += 2) {
      if (i > 0) this.out += ","
      const key = this.strText(items[i] as PStr)!
      this.out += (key.includes("\0") ? quote("@ns:" + base64Utf8(key)) : quote(key)) + ":"
      this.path.push(key)
      this.value(items[i + 1]!)
      this.path.pop()
    }
    this.out += "}"
  }

  private global(v: PGlobal): void {
    this.out += '{"@cls":[' + quote(v.module) + "," + quote(v.name) + "]}"
  }

  private ref(pid: PickleValue): void {
    if (pid.kind === "tuple" && pid.items.length === 2 && pid.items[0]!.kind === "bytes") {
      const oid = hex(this.bytesOf(pid.items[0]!))
      const klass = pid.items[1]!
      if (klass.kind === "none") {
        this.out += '{"@ref":"' + oid + '"}'
        return
      }
      if (klass.kind === "global") {
        this.out += '{"@ref":["' + oid + '",' + quote(klass.module === "" ? klass.name : klass.module + "." + klass.name) +
          "]}"
        return
      }
    }
    const weak = weakRefOid(pid)
    if (weak !== undefined) {
      if (weak.sameDb) this.tally.weakSameDb++
      else this.tally.weakOtherDb++
      if (this.faithful && weak.sameDb) {
        // ZODB's legacy weak reference [oid]: the loader pickles a one-item list, which ZODB reads as a WeakRef
        this.out += '{"@ref":['
        this.value(weak.oid)
        this.out += "]}"
        return
      }
    }
    this.out += '{"@ref":'
    this.value(pid)
    this.out += "}"
  }

  // -- objects --

  private object(o: PObject): void {
    if (o.state === undefined) this.reduce(o)
    else this.instance(o)
  }

  private reduce(o: PObject): void {
    const args = reduceArgs(o)
    if (o.callable.kind === "global" && args.kind === "tuple" && this.typedReduce(o.callable, args)) return
    if (o.dictItems !== undefined || o.listItems !== undefined) {
      this.visit(o)
      const what = className(o.callable)
      if (this.faithful && this.itemsAsArgs(o, args)) {
        this.tally.keep(this.tally.itemsKept, () => what)
        return
      }
      this.tally.keep(this.tally.itemsDropped, () => what)
    } else if (o.op === "newobj" || o.op === "newobj_ex") {
      // REDUCE calls cls(*args), NEWOBJ cls.__new__(cls, *args): the loader only knows REDUCE
      const what = className(o.callable)
      if (this.faithful && o.op === "newobj" && o.callable.kind === "global" && args.kind === "tuple" &&
        args.items.length === 0) {
        // NEWOBJ + BUILD(None) is the same object, and the loader writes that for {"@cls", "@s": null}
        this.tally.keep(this.tally.argsKept, () => what)
        this.out += '{"@cls":[' + quote(o.callable.module) + "," + quote(o.callable.name) + '],"@s":null}'
        return
      }
      this.tally.keep(this.tally.argsDropped, () => what)
    }
    this.out += '{"@reduce":{"callable":'
    this.path.push("callable")
    this.value(o.callable)
    this.path.pop()
    this.out += ',"args":'
    this.path.push("args")
    this.node(args)
    this.path.pop()
    if (o.dictItems !== undefined) {
      this.out += ',"items":'
      this.path.push("items")
      this.pairs(o.dictItems, false)
      this.path.pop()
    }
    if (o.listItems !== undefined) {
      this.out += ',"appends":'
      this.path.push("appends")
      this.array(o.listItems)
      this.path.pop()
    }
    this.out += "}}"
  }

  /**
   * Faithful form of a reduce with items for the classes whose constructor takes them: the loader
   * drops "items"/"appends", but keeps the args. Returns false when the class is not one of them.
   */
  private itemsAsArgs(o: PObject, args: CodecNode): boolean {
    const c = o.callable
    if (c.kind !== "global" || c.module !== "collections" || args.kind !== "tuple") return false
    const a = args.items
    const head = '{"@reduce":{"callable":{"@cls":["collections",' + quote(c.name) + ']},"args":{"@t":['
    if (o.listItems === undefined && o.dictItems !== undefined) {
      // OrderedDict(items) and defaultdict(factory, items)
      if (c.name === "OrderedDict" && a.length === 0) {
        this.out += head
      } else if (c.name === "defaultdict" && a.length === 1) {
        this.out += head
        this.value(a[0]!)
        this.out += ","
      } else {
        return false
      }
      this.pairs(o.dictItems, true)
      this.out += "]}}}"
      return true
    }
    if (o.dictItems === undefined && o.listItems !== undefined && c.name === "deque") {
      // deque(items[, maxlen]); deque pickles as ((), maxlen) when it has a maxlen
      if (a.length === 0) {
        this.out += head
        this.array(o.listItems)
      } else if (a.length === 2 && a[0]!.kind === "tuple" && a[0]!.items.length === 0) {
        this.out += head
        this.array(o.listItems)
        this.out += ","
        this.value(a[1]!)
      } else {
        return false
      }
      this.out += "]}}}"
      return true
    }
    return false
  }

  private instance(o: PObject): void {
    const { module, name } = instanceClass(o)
    const state = instanceState(o)
    if (module === "uuid" && name === "UUID" && this.uuid(state)) return
    this.visit(o)
    if (stateHasArgs(o)) this.tally.keep(this.tally.argsDropped, () => className(o.callable))
    const info = classifyBTree(module, name)
    if (module === "" && name === "") {
      // the codec writes neither items nor appends here
      if (o.dictItems !== undefined || o.listItems !== undefined) this.tally.keep(this.tally.itemsDropped, () => className(o.callable))
      this.out += '{"@inst":'
      this.stateOf(info, state)
      this.out += "}"
      return
    }
    this.out += '{"@cls":[' + quote(module) + "," + quote(name) + '],"@s":'
    this.stateOf(info, state)
    if (o.dictItems !== undefined) {
      this.tally.keep(this.tally.itemsDropped, () => module + "." + name)
      this.out += ',"@items":'
      this.path.push("@items")
      this.pairs(o.dictItems, false)
      this.path.pop()
    }
    if (o.listItems !== undefined) {
      if (o.dictItems === undefined) this.tally.keep(this.tally.itemsDropped, () => module + "." + name)
      this.out += ',"@appends":'
      this.path.push("@appends")
      this.array(o.listItems)
      this.path.pop()
    }
    this.out += "}"
  }

  private stateOf(info: BTreeClass | undefined, state: CodecNode): void {
    this.path.push("@s")
    if (info === undefined) this.node(state)
    else this.btree(info, state)
    this.path.pop()
  }

  /** uuid.UUID: state {"int": N} gives {"@uuid": "8-4-4-4-12"} of N's low 128 bits. */
  private uuid(state: CodecNode): boolean {
    if (state.kind !== "dict") return false
    const items = state.items
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i]!
      if (k.kind !== "str" || k.value !== "int") continue
      const v = items[i + 1]!
      if (v.kind !== "int") return false
      const big = BigInt(v.value)
      let n: bigint
      if (isI64(v.value)) n = big < 0n ? big + (1n << 128n) : big
      else n = (big < 0n ? -big : big) & ((1n << 128n) - 1n)
      const h = n.toString(16).padStart(32, "0")
      this.out += '{"@uuid":"' + h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) +
        "-" + h.slice(20, 32) + '"}'
      return true
    }
    return false
  }

  // -- BTrees --

  btree(info: BTreeClass, state: CodecNode): void {
    if (state.kind === "none") {
      this.out += "null"
      return
    }
    if (state.kind !== "tuple") return this.node(state)
    const outer = state.items
    if (info.node === "tree") {
      if (outer.length === 1) {
        const flat = unwrapInlineBTree(outer[0]!)
        if (flat !== undefined) return this.flat(info, flat)
      } else if (outer.length === 2) {
        const children = outer[0]!
        if (children.kind === "tuple" && children.items.some((c) => c.kind === "pref")) {
          this.out += '{"@children":'
          this.path.push("@children")
          this.array(children.items)
          this.path.pop()
          this.out += ',"@first":'
          this.path.push("@first")
          this.value(outer[1]!)
          this.path.pop()
          this.out += "}"
          return
        }
      }
      return this.value(state)
    }
    if (outer.length === 1 && outer[0]!.kind === "tuple") return this.flat(info, outer[0]!.items)
    if (outer.length === 2 && outer[0]!.kind === "tuple") {
      this.out += "{"
      this.flatItems(info, outer[0]!.items)
      this.out += ',"@next":'
      this.path.push("@next")
      this.value(outer[1]!)
      this.path.pop()
      this.out += "}"
      return
    }
    this.value(state)
  }

  private flat(info: BTreeClass, items: ReadonlyArray<PickleValue>): void {
    this.out += "{"
    this.flatItems(info, items)
    this.out += "}"
  }

  private flatItems(info: BTreeClass, items: ReadonlyArray<PickleValue>): void {
    if (info.isMap) {
      if (items.length % 2 !== 0) throw this.error("BTree bucket has odd number of items for key-value pairs")
      this.out += '"@kv":'
      this.path.push("@kv")
      this.pairs(items, false)
    } else {
      this.out += '"@ks":'
      this.path.push("@ks")
      this.array(items)
    }
    this.path.pop()
  }

  // -- known types (zodb-json-codec known_types.rs) --

  private typedReduce(c: PGlobal, args: PTuple): boolean {
    switch (c.module) {
      case "datetime":
        switch (c.name) {
          case "datetime":
            return this.datetimeOrTime(args, 10, "@dt")
          case "time":
            return this.datetimeOrTime(args, 6, "@time")
          case "date":
            return this.date(args)
          case "timedelta":
            return this.timedelta(args)
        }
        return false
      case "decimal":
        return c.name === "Decimal" && this.decimal(args)
      case "builtins":
        if (c.name !== "set" && c.name !== "frozenset") return false
        {
          const list = args.items[0]
          if (args.items.length !== 1 || list!.kind !== "list") return false
          this.out += c.name === "set" ? '{"@set":' : '{"@fset":'
          this.array(list!.items)
          this.out += "}"
          return true
        }
    }
    return false
  }

  private datetimeOrTime(args: PTuple, size: 10 | 6, marker: "@dt" | "@time"): boolean {
    const items = args.items
    const first = items[0]
    if (first === undefined || first.kind !== "bytes") return false
    const b = this.peekBytes(first)
    if (b.length !== size) return false
    const text = size === 10 ? isoDatetime(b) : isoTime(b, 0)
    if (items.length === 1) {
      this.out += '{"' + marker + '":"' + text + '"}'
      return true
    }
    if (items.length !== 2) return false
    const tz = tzInfo(items[1]!)
    if (tz === undefined) return false
    switch (tz.kind) {
      case "fixed":
        if (tz.subMinute) {
          this.tally.tzSeconds++
          if (this.faithful) return false
        }
        this.out += '{"' + marker + '":"' + text + formatOffset(tz.seconds) + '"}'
        return true
      case "pytz-utc":
        this.tally.pytzUtc++
        if (this.faithful) return false
        this.out += '{"' + marker + '":"' + text + '+00:00"}'
        return true
      case "pytz":
        this.out += '{"' + marker + '":"' + text + '","@tz":{"pytz":[' + tz.args.join(",") + '],"name":' + quote(tz.name) +
          "}}"
        return true
      case "zoneinfo":
        this.out += '{"' + marker + '":"' + text + '","@tz":{"zoneinfo":' + quote(tz.key) + "}}"
        return true
    }
  }

  private date(args: PTuple): boolean {
    const first = args.items[0]
    if (args.items.length !== 1 || first!.kind !== "bytes") return false
    const b = this.peekBytes(first!)
    if (b.length !== 4) return false
    this.out += '{"@date":"' + pad(b[0]! * 256 + b[1]!, 4) + "-" + pad(b[2]!, 2) + "-" + pad(b[3]!, 2) + '"}'
    return true
  }

  private timedelta(args: PTuple): boolean {
    const a = args.items
    if (a.length !== 3) return false
    const [d, s, us] = a as [PickleValue, PickleValue, PickleValue]
    if (d.kind !== "int" || s.kind !== "int" || us.kind !== "int") return false
    if (!isI64(d.value) || !isI64(s.value) || !isI64(us.value)) return false
    this.out += '{"@td":[' + String(d.value) + "," + String(s.value) + "," + String(us.value) + "]}"
    return true
  }

  private decimal(args: PTuple): boolean {
    const s = args.items[0]
    if (args.items.length !== 1 || s!.kind !== "str" || s!.surrogates !== undefined) return false
    this.out += '{"@dec":' + quote(this.strText(s as PStr)!) + "}"
    return true
  }

  /** bytes for a typed check, without counting them as written */
  private peekBytes(v: PBytes): Uint8Array {
    return !this.faithful && v.codec !== undefined ? v.codec : v.value
  }

  // -- bookkeeping --

  /** Notes a mutable object; reached a second time (or a memo copy) it is a shared-object loss. */
  private visit(v: PickleValue): void {
    if ((v as { memoCopy?: true }).memoCopy === true) {
      this.tally.keep(this.tally.sharedPaths, () => this.pathText())
    } else if (this.seen !== undefined) {
      if (this.seen.has(v)) this.tally.keep(this.tally.sharedPaths, () => this.pathText())
      else this.seen.add(v)
    }
  }

  private pathText(): string {
    return this.path.length === 0 ? "/" : "/" + this.path.join("/")
  }

  private unfolded(what: string): StateError {
    return this.error(
      `the state unfolds to ${what} from a ${this.options.recordBytes}-byte record (sub-objects shared through ` +
        "the pickle memo, repeated in JSON): refused rather than written out"
    )
  }

  private error(problem: string): StateError {
    return new StateError({ offset: this.options.offset, path: this.pathText(), problem })
  }
}

const shorten = (digits: string): string => digits.length > 24 ? digits.slice(0, 24) + "..." : digits

const isI64 = (v: number | bigint): boolean => typeof v === "number" || (v >= I64_MIN && v <= I64_MAX)

const className = (c: PickleValue): string => c.kind === "global" ? `${c.module}.${c.name}` : c.kind

/** (((items,),),): a BTree whose single bucket is inline. */
const unwrapInlineBTree = (v: PickleValue): ReadonlyArray<PickleValue> | undefined => {
  if (v.kind !== "tuple" || v.items.length !== 1) return undefined
  const level3 = v.items[0]!
  if (level3.kind !== "tuple" || level3.items.length !== 1) return undefined
  const data = level3.items[0]!
  return data.kind === "tuple" ? data.items : undefined
}

/** A weak reference ["w", (oid,)] or ["w", (oid, database_name)]. */
const weakRefOid = (pid: PickleValue): { readonly oid: PBytes; readonly sameDb: boolean } | undefined => {
  if (pid.kind !== "list" || pid.items.length !== 2) return undefined
  const [w, args] = pid.items as [PickleValue, PickleValue]
  if (w.kind !== "str" || w.value !== "w" || args.kind !== "tuple" || args.items.length === 0) return undefined
  const oid = args.items[0]!
  if (oid.kind !== "bytes") return undefined
  return { oid, sameDb: args.items.length === 1 }
}

type TzInfo =
  | { readonly kind: "fixed"; readonly seconds: number; readonly subMinute: boolean }
  | { readonly kind: "pytz-utc" }
  | { readonly kind: "pytz"; readonly name: string; readonly args: ReadonlyArray<string> }
  | { readonly kind: "zoneinfo"; readonly key: string }

/** The codec's `extract_tz_info`: the tz argument of a datetime/time reduce. */
const tzInfo = (v: PickleValue): TzInfo | undefined => {
  if (v.kind !== "object" || v.state !== undefined) return undefined
  const c = v.callable
  const args = reduceArgs(v)
  if (c.kind === "global") {
    if (c.module === "datetime" && c.name === "timezone") {
      if (args.kind !== "tuple" || args.items.length !== 1) return undefined
      const td = timedeltaSeconds(args.items[0]!)
      return td === undefined ? undefined : { kind: "fixed", ...td }
    }
    if (c.module === "pytz" && c.name === "_UTC") return { kind: "pytz-utc" }
    if (c.module === "pytz" && c.name === "_p") {
      if (args.kind !== "tuple" || args.items.length === 0) return undefined
      const zone = args.items[0]!
      if (zone.kind !== "str") return undefined
      return { kind: "pytz", name: zone.value, args: args.items.map(tzArg) }
    }
    return undefined
  }
  if (c.kind === "object" && c.state === undefined) {
    const inner = c.callable
    if (inner.kind === "global" && inner.module === "builtins" && inner.name === "getattr" && args.kind === "tuple") {
      const key = args.items[0]
      if (key !== undefined && key.kind === "str") return { kind: "zoneinfo", key: key.value }
    }
  }
  return undefined
}

/** pytz args as the codec keeps them: str and i64 int, anything else null. */
const tzArg = (v: PickleValue): string => {
  if (v.kind === "str") return quote(v.value)
  if (v.kind === "int" && isI64(v.value)) return String(v.value)
  return "null"
}

/** Total seconds of a datetime.timedelta reduce (days*86400 + seconds), and whether it has sub-minute parts. */
const timedeltaSeconds = (v: PickleValue): { readonly seconds: number; readonly subMinute: boolean } | undefined => {
  if (v.kind !== "object" || v.state !== undefined) return undefined
  const c = v.callable
  const args = reduceArgs(v)
  if (c.kind !== "global" || c.module !== "datetime" || c.name !== "timedelta") return undefined
  if (args.kind !== "tuple" || args.items.length !== 3) return undefined
  const [d, s, us] = args.items as [PickleValue, PickleValue, PickleValue]
  if (d.kind !== "int" || s.kind !== "int" || !isI64(d.value) || !isI64(s.value)) return undefined
  const seconds = Number(BigInt(d.value) * 86400n + BigInt(s.value))
  const subMinute = seconds % 60 !== 0 || us.kind !== "int" || us.value !== 0
  return { seconds, subMinute }
}

const formatOffset = (total: number): string => {
  const sign = total >= 0 ? "+" : "-"
  const abs = Math.abs(total)
  return sign + pad(Math.floor(abs / 3600), 2) + ":" + pad(Math.floor((abs % 3600) / 60), 2)
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

const isoDatetime = (b: Uint8Array): string =>
  pad(b[0]! * 256 + b[1]!, 4) + "-" + pad(b[2]!, 2) + "-" + pad(b[3]!, 2) + "T" + isoTime(b, 4)

const isoTime = (b: Uint8Array, at: number): string => {
  const us = (b[at + 3]! << 16) | (b[at + 4]! << 8) | b[at + 5]!
  const hms = pad(b[at]!, 2) + ":" + pad(b[at + 1]!, 2) + ":" + pad(b[at + 2]!, 2)
  return us > 0 ? hms + "." + pad(us, 6) : hms
}

