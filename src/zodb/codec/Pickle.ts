/**
 * Pickle decoder: the opcodes of protocols 0-5 as CPython's pickle.py (and zodbpickle) define them,
 * evaluated into a PickleValue tree (PickleValue.ts) without running any Python.
 *
 * Where zodb-json-codec 1.6.1 reads a pickle differently from CPython, the tree records the codec's
 * reading too (PStr.codec, PBytes.codec), and `codecRejects` lists what the codec would refuse
 * outright (opcodes it lacks, lone surrogates...), so callers can both mimic and improve on it.
 *
 * Memo semantics follow the codec: a memo reference (GET) to a finished object is that object again; to an
 * object still being built (still on the stack) it is a snapshot of it at that moment; an object reached
 * through the memo and then mutated is copied first (copy on write). This gives the codec's values exactly
 * (the codec copies on every GET) while sharing in the common case.
 *
 * Errors are thrown as PickleError (offset and opcode of the failing instruction); nothing else escapes.
 */
import { PickleError } from "./CodecErrors.ts"
import {
  FALSE,
  intOf,
  NONE,
  type ObjectOp,
  type PBytes,
  type PickleValue,
  type PList,
  type PObject,
  type PStr,
  TRUE
} from "./PickleValue.ts"

/** zodb-json-codec refuses memo indexes from this value on. */
const CODEC_MAX_MEMO = 100_000
/** zodb-json-codec refuses BINUNICODE8/BINBYTES8 longer than this. */
const CODEC_MAX_BINARY = 256 * 1024 * 1024
const HIGHEST_PROTOCOL = 5

const utf8Fatal = new TextDecoder("utf-8", { fatal: true })
const latin1 = new TextDecoder("latin1")

/**
 * Reads consecutive pickles from one byte array with one memo, as ZODB writes a record: the class
 * pickle and the state pickle share the pickler's memo.
 */
export class PickleReader {
  /** Position of the next byte to read. */
  pos: number
  /** Why zodb-json-codec would refuse these pickles (empty when it accepts them). */
  readonly codecRejects: Array<string> = []
  /** How many memo GETs handed out a mutable object (list, dict, set, object): sharing to look for. */
  mutableGets = 0
  private readonly bytes: Uint8Array
  private readonly view: DataView
  private stack: Array<PickleValue> = []
  private readonly metastack: Array<Array<PickleValue>> = []
  private readonly memo: Array<PickleValue | undefined> = []
  private memoCount = 0
  /** Finished objects pushed again by a memo GET: mutating one copies it first. */
  private shared: Set<PickleValue> | undefined
  private opPos = 0
  private op = -1
  /**
   * Items copied so far may not pass this: DUP and copy-on-write are linear each, so a pickle repeating
   * them over a big container would take quadratic time (CPython's pickler never writes DUP).
   */
  private readonly copyLimit: number
  private workLeft: number
  /**
   * Stack and memo entries looked through (is a memo GET's object still being built?). CPython's
   * pickler batches APPENDS/SETITEMS by 1,000, so each GET (two bytes at least) looks through about a
   * thousand entries at most: 10^9 + 2,000 per byte is never reached by a real pickle, only by one that
   * would run for minutes.
   */
  private readonly scanLimit: number
  private scanLeft: number

  constructor(bytes: Uint8Array, start = 0) {
    this.copyLimit = this.workLeft = 4_000_000 + 64 * bytes.length
    this.scanLimit = this.scanLeft = 1_000_000_000 + 2_000 * bytes.length
    this.bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.pos = start
  }

  /** Decodes the next pickle (up to and including its STOP). */
  next(): PickleValue {
    const bytes = this.bytes
    const end = bytes.length
    for (;;) {
      if (this.pos >= end) {
        this.opPos = this.pos
        this.op = -1
        throw this.fail("truncated: input ended before STOP")
      }
      this.opPos = this.pos
      const op = bytes[this.pos++]!
      this.op = op
      switch (op) {
        case 0x2e: // STOP '.'
          return this.pop()
        case 0x80: { // PROTO
          const proto = this.u8()
          if (proto > HIGHEST_PROTOCOL) throw this.fail(`unsupported protocol ${proto}`)
          break
        }
        case 0x95: // FRAME: only a length hint
          this.need(8)
          this.pos += 8
          break

        case 0x4e: // NONE 'N'
          this.stack.push(NONE)
          break
        case 0x88: // NEWTRUE
          this.stack.push(TRUE)
          break
        case 0x89: // NEWFALSE
          this.stack.push(FALSE)
          break

        case 0x4a: // BININT 'J'
          this.need(4)
          this.stack.push({ kind: "int", value: this.view.getInt32(this.pos, true) })
          this.pos += 4
          break
        case 0x4b: // BININT1 'K'
          this.stack.push({ kind: "int", value: this.u8() })
          break
        case 0x4d: // BININT2 'M'
          this.need(2)
          this.stack.push({ kind: "int", value: this.view.getUint16(this.pos, true) })
          this.pos += 2
          break
        case 0x49: // INT 'I': also protocol 0/1 booleans
          this.pushTextInt(this.line())
          break
        case 0x4c: // LONG 'L'
          this.pushTextLong(this.line())
          break
        case 0x8a: { // LONG1
          const n = this.u8()
          this.stack.push(this.longLE(n))
          break
        }
        case 0x8b: { // LONG4
          this.need(4)
          const n = this.view.getInt32(this.pos, true)
          this.pos += 4
          if (n < 0) throw this.fail("negative length in LONG4")
          this.stack.push(this.longLE(n))
          break
        }

        case 0x47: // BINFLOAT 'G'
          this.need(8)
          this.stack.push({ kind: "float", value: this.view.getFloat64(this.pos, false) })
          this.pos += 8
          break
        case 0x46: // FLOAT 'F'
          this.stack.push({ kind: "float", value: this.parseTextFloat(this.line()) })
          break

        case 0x54: { // BINSTRING 'T' (Python 2 str)
          this.need(4)
          const n = this.view.getInt32(this.pos, true)
          this.pos += 4
          if (n < 0) throw this.fail("negative length in BINSTRING")
          this.stack.push({ kind: "bytes", value: this.take(n), py2: true })
          break
        }
        case 0x55: // SHORT_BINSTRING 'U'
          this.stack.push({ kind: "bytes", value: this.take(this.u8()), py2: true })
          break
        case 0x53: // STRING 'S'
          this.stack.push(this.textString(this.line()))
          break

        case 0x58: // BINUNICODE 'X'
          this.need(4)
          this.pushUtf8(this.view.getUint32(this.pos, true), 4)
          break
        case 0x8c: // SHORT_BINUNICODE
          this.need(1)
          this.pushUtf8(bytes[this.pos]!, 1)
          break
        case 0x8d: // BINUNICODE8
          this.pushUtf8(this.u64len(), 0)
          break
        case 0x56: // UNICODE 'V'
          this.stack.push(this.textUnicode(this.line()))
          break

        case 0x42: // BINBYTES 'B'
          this.need(4)
          {
            const n = this.view.getUint32(this.pos, true)
            this.pos += 4
            this.stack.push({ kind: "bytes", value: this.take(n) })
          }
          break
        case 0x43: // SHORT_BINBYTES 'C'
          this.stack.push({ kind: "bytes", value: this.take(this.u8()) })
          break
        case 0x8e: // BINBYTES8
          this.stack.push({ kind: "bytes", value: this.take(this.u64len()) })
          break
        case 0x96: // BYTEARRAY8: bytearray(b), the object protocol 3 pickles as REDUCE(bytearray, (b,))
          this.rejectedByCodec("opcode BYTEARRAY8")
          this.stack.push(this.object("bytearray8", { kind: "global", module: "builtins", name: "bytearray" }, {
            kind: "tuple",
            items: [{ kind: "bytes", value: this.take(this.u64len()) }]
          }))
          break
        case 0x97: // NEXT_BUFFER
          throw this.fail("out-of-band buffer, but no buffers are given")
        case 0x98: // READONLY_BUFFER: makes a buffer read-only, nothing to keep
          this.rejectedByCodec("opcode READONLY_BUFFER")
          this.top()
          break

        case 0x28: // MARK '('
          this.metastack.push(this.stack)
          this.stack = []
          break
        case 0x30: // POP '0'
          this.pop()
          break
        case 0x31: // POP_MARK '1'
          this.rejectedByCodec("opcode POP_MARK")
          this.popMark()
          break
        case 0x32: { // DUP '2': the codec copies; a shallow copy is a full one (children are finished)
          const top = this.top()
          this.stack.push(this.copy(top))
          break
        }

        case 0x29: // EMPTY_TUPLE ')'
          this.stack.push({ kind: "tuple", items: [] })
          break
        case 0x74: { // TUPLE 't'
          const items = this.popMark() // before reading this.stack: popMark replaces it
          this.stack.push({ kind: "tuple", items })
          break
        }
        case 0x85: { // TUPLE1
          const a = this.pop()
          this.stack.push({ kind: "tuple", items: [a] })
          break
        }
        case 0x86: { // TUPLE2
          const b = this.pop()
          const a = this.pop()
          this.stack.push({ kind: "tuple", items: [a, b] })
          break
        }
        case 0x87: { // TUPLE3
          const c = this.pop()
          const b = this.pop()
          const a = this.pop()
          this.stack.push({ kind: "tuple", items: [a, b, c] })
          break
        }

        case 0x5d: // EMPTY_LIST ']'
          this.stack.push({ kind: "list", items: [] })
          break
        case 0x6c: { // LIST 'l'
          const items = this.popMark()
          this.stack.push({ kind: "list", items })
          break
        }
        case 0x61: { // APPEND 'a'
          const v = this.pop()
          const top = this.ownTop()
          if (top.kind === "list") top.items.push(v)
          else if (top.kind === "object") (top.listItems ??= []).push(v)
          else throw this.fail(`APPEND to ${top.kind}`)
          break
        }
        case 0x65: { // APPENDS 'e'
          const items = this.popMark()
          const top = this.ownTop()
          if (top.kind === "list") pushAll(top.items, items)
          else if (top.kind === "object") pushAll(top.listItems ??= [], items)
          else throw this.fail(`APPENDS to ${top.kind}`)
          break
        }

        case 0x7d: // EMPTY_DICT '}'
          this.stack.push({ kind: "dict", items: [] })
          break
        case 0x64: { // DICT 'd'
          const items = this.popMark()
          if (items.length % 2 !== 0) throw this.fail("odd number of items for DICT")
          this.stack.push({ kind: "dict", items })
          break
        }
        case 0x73: { // SETITEM 's'
          const v = this.pop()
          const k = this.pop()
          const top = this.ownTop()
          if (top.kind === "dict") top.items.push(k, v)
          else if (top.kind === "object") (top.dictItems ??= []).push(k, v)
          else throw this.fail(`SETITEM on ${top.kind}`)
          break
        }
        case 0x75: { // SETITEMS 'u'
          const items = this.popMark()
          if (items.length % 2 !== 0) throw this.fail("odd number of items for SETITEMS")
          const top = this.ownTop()
          if (top.kind === "dict") pushAll(top.items, items)
          else if (top.kind === "object") pushAll(top.dictItems ??= [], items)
          else throw this.fail(`SETITEMS on ${top.kind}`)
          break
        }

        case 0x8f: // EMPTY_SET
          this.stack.push({ kind: "set", items: [] })
          break
        case 0x90: { // ADDITEMS
          const items = this.popMark()
          const top = this.ownTop()
          if (top.kind !== "set") throw this.fail(`ADDITEMS on ${top.kind}`)
          pushAll(top.items, items)
          break
        }
        case 0x91: { // FROZENSET
          const items = this.popMark()
          this.stack.push({ kind: "frozenset", items })
          break
        }

        case 0x63: { // GLOBAL 'c'
          const module = this.text(this.line())
          const name = this.text(this.line())
          this.stack.push({ kind: "global", module, name })
          break
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop()
          const module = this.pop()
          if (module.kind !== "str" || name.kind !== "str") throw this.fail("STACK_GLOBAL needs two str")
          this.stack.push({ kind: "global", module: module.value, name: name.value })
          break
        }

        case 0x52: { // REDUCE 'R'
          const args = this.pop()
          const callable = this.pop()
          this.stack.push(this.reduce(callable, args))
          break
        }
        case 0x81: { // NEWOBJ
          const args = this.pop()
          const cls = this.pop()
          this.stack.push(this.object("newobj", cls, args))
          break
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.pop()
          const args = this.pop()
          const cls = this.pop()
          const obj = this.object("newobj_ex", cls, args)
          obj.kwargs = kwargs
          this.stack.push(obj)
          break
        }
        case 0x69: { // INST 'i': module\nname\n, args since MARK; cls(*args)
          this.rejectedByCodec("opcode INST")
          const module = this.text(this.line())
          const name = this.text(this.line())
          const args = this.popMark()
          this.stack.push(this.object("inst", { kind: "global", module, name }, { kind: "tuple", items: args }))
          break
        }
        case 0x6f: { // OBJ 'o': cls and args since MARK; cls(*args)
          this.rejectedByCodec("opcode OBJ")
          const items = this.popMark()
          const cls = items.shift()
          if (cls === undefined) throw this.fail("OBJ without a class")
          this.stack.push(this.object("obj", cls, { kind: "tuple", items }))
          break
        }
        case 0x62: // BUILD 'b'
          this.build(this.pop())
          break

        case 0x51: { // BINPERSID 'Q'
          const pid = this.pop()
          this.stack.push({ kind: "pref", pid })
          break
        }
        case 0x50: // PERSID 'P'
          this.stack.push({ kind: "pref", pid: { kind: "str", value: this.text(this.line()) } })
          break

        case 0x71: // BINPUT 'q'
          this.put(this.u8())
          break
        case 0x72: // LONG_BINPUT 'r'
          this.need(4)
          this.put(this.view.getUint32(this.pos, true))
          this.pos += 4
          break
        case 0x70: // PUT 'p'
          this.put(this.textIndex(this.line()))
          break
        case 0x94: // MEMOIZE: index = number of memo entries (CPython: len(memo))
          this.put(this.memoCount)
          break
        case 0x68: // BINGET 'h'
          this.get(this.u8())
          break
        case 0x6a: // LONG_BINGET 'j'
          this.need(4)
          this.get(this.view.getUint32(this.pos, true))
          this.pos += 4
          break
        case 0x67: // GET 'g'
          this.get(this.textIndex(this.line()))
          break

        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: { // EXT4: copyreg's extension registry, which nothing ZODB writes registers
          const n = op === 0x82 ? 1 : op === 0x83 ? 2 : 4
          this.need(n)
          const code = n === 1 ? bytes[this.pos]! : n === 2 ? this.view.getUint16(this.pos, true) : this.view.getInt32(
            this.pos,
            true
          )
          this.pos += n
          throw this.fail(`unregistered extension code ${code}`)
        }

        default:
          throw this.fail("unknown opcode")
      }
    }
  }

  // -- construction --

  private object(op: ObjectOp, callable: PickleValue, args: PickleValue): PObject {
    return { kind: "object", op, callable, args }
  }

  /** REDUCE; `builtins.set(list)` / `frozenset(list)` become the set itself, as the codec does. */
  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (
      callable.kind === "global" && callable.module === "builtins" &&
      (callable.name === "set" || callable.name === "frozenset") &&
      args.kind === "tuple" && args.items.length === 1 && args.items[0]!.kind === "list"
    ) {
      const list = args.items[0] as PList
      this.charge(list.items.length)
      const items = list.items.slice()
      return callable.name === "set" ? { kind: "set", items } : { kind: "frozenset", items }
    }
    return this.object("reduce", callable, args)
  }

  private build(state: PickleValue): void {
    const target = this.ownTop()
    if (target.kind === "object") {
      if (target.state !== undefined) target.rebuilt = true
      target.state = state
      return
    }
    // BUILD on a class or a plain value: a new node that the memo entries of the old one now mean
    const obj: PObject = { kind: "object", op: "build", callable: target, args: { kind: "tuple", items: [] }, state }
    this.stack[this.stack.length - 1] = obj
    const memo = this.memo
    this.scanned(memo.length)
    for (let i = 0; i < memo.length; i++) if (memo[i] === target) memo[i] = obj
  }

  // -- memo --

  private put(idx: number): void {
    if (idx >= CODEC_MAX_MEMO) this.rejectedByCodec(`memo index ${idx}`)
    if (this.memo[idx] === undefined) this.memoCount++
    this.memo[idx] = this.top()
  }

  private get(idx: number): void {
    const v = this.memo[idx]
    if (v === undefined) throw this.fail(`memo index ${idx} not found`)
    if (!isMutable(v)) {
      this.stack.push(v)
      return
    }
    this.mutableGets++
    if (this.isOpen(v)) {
      // still being built: the codec's snapshot of it now
      const copy = this.copy(v)
      ;(copy as { memoCopy?: true }).memoCopy = true
      this.stack.push(copy)
    } else {
      ;(this.shared ??= new Set()).add(v)
      this.stack.push(v)
    }
  }

  private isOpen(v: PickleValue): boolean {
    this.scanned(this.stack.length + this.metastack.length)
    if (this.stack.includes(v)) return true
    for (const frame of this.metastack) {
      this.scanned(frame.length)
      if (frame.includes(v)) return true
    }
    return false
  }

  private scanned(n: number): void {
    this.scanLeft -= n
    if (this.scanLeft < 0) throw this.fail(`the pickle looks through more than ${this.scanLimit} stack and memo entries (memo GETs over a deep stack)`)
  }

  private copy(v: PickleValue): PickleValue {
    const c = shallowCopy(v)
    if (c !== v) this.charge(sizeOf(v))
    return c
  }

  private charge(n: number): void {
    this.workLeft -= n
    if (this.workLeft < 0) {
      throw this.fail(`the pickle copies more than ${this.copyLimit} values (DUP and memo copies repeated over large containers)`)
    }
  }

  // -- stack --

  private pop(): PickleValue {
    const v = this.stack.pop()
    if (v === undefined) throw this.fail("stack underflow")
    return v
  }

  private top(): PickleValue {
    const v = this.stack[this.stack.length - 1]
    if (v === undefined) throw this.fail("stack underflow")
    return v
  }

  /** The top of the stack, ready to mutate: a finished object reached through the memo is copied first. */
  private ownTop(): PickleValue {
    const v = this.top()
    if (this.shared === undefined || !this.shared.has(v)) return v
    const copy = this.copy(v)
    ;(copy as { memoCopy?: true }).memoCopy = true
    this.stack[this.stack.length - 1] = copy
    return copy
  }

  private popMark(): Array<PickleValue> {
    const items = this.stack
    const outer = this.metastack.pop()
    if (outer === undefined) throw this.fail("no MARK on the stack")
    this.stack = outer
    return items
  }

  // -- reading --

  private fail(problem: string): PickleError {
    return new PickleError({ offset: this.opPos, opcode: this.op, problem })
  }

  private rejectedByCodec(what: string): void {
    this.codecRejects.push(`${what} at byte ${this.opPos}`)
  }

  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw this.fail(`truncated: needs ${n} more byte(s)`)
  }

  private u8(): number {
    this.need(1)
    return this.bytes[this.pos++]!
  }

  private u64len(): number {
    this.need(8)
    const lo = this.view.getUint32(this.pos, true)
    const hi = this.view.getUint32(this.pos + 4, true)
    this.pos += 8
    const n = hi * 0x1_0000_0000 + lo
    if (n > CODEC_MAX_BINARY) this.rejectedByCodec(`length ${n}`)
    return n
  }

  private take(n: number): Uint8Array {
    this.need(n)
    const v = this.bytes.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  /** The bytes up to the next newline (which is consumed, not returned). */
  private line(): Uint8Array {
    const nl = this.bytes.indexOf(0x0a, this.pos)
    if (nl < 0) throw this.fail("truncated: no newline")
    const v = this.bytes.subarray(this.pos, nl)
    this.pos = nl + 1
    return v
  }

  private text(b: Uint8Array): string {
    const s = decodeUtf8(b)
    if (s === undefined || typeof s !== "string") throw this.fail("argument is not UTF-8")
    return s
  }

  private textIndex(b: Uint8Array): number {
    const s = latin1.decode(b).trim()
    if (!/^\d+$/.test(s)) throw this.fail(`bad memo index ${JSON.stringify(s)}`)
    return Number(s)
  }

  private pushUtf8(n: number, lenBytes: number): void {
    this.pos += lenBytes
    const b = this.take(n)
    const s = decodeUtf8(b)
    if (s === undefined) throw this.fail("string is not UTF-8")
    if (typeof s === "string") {
      this.stack.push({ kind: "str", value: s })
    } else {
      this.rejectedByCodec("lone surrogate in a string")
      this.stack.push({ kind: "str", value: s.value, surrogates: b })
    }
  }

  private pushTextInt(b: Uint8Array): void {
    const s = latin1.decode(b).trim()
    if (s === "00") this.stack.push(FALSE)
    else if (s === "01") this.stack.push(TRUE)
    else {
      if (!/^[+-]?\d+$/.test(s)) throw this.fail(`bad INT ${JSON.stringify(s)}`)
      const v = BigInt(s)
      if (v < -(2n ** 63n) || v >= 2n ** 63n) this.rejectedByCodec("INT beyond 64 bits")
      this.stack.push(intOf(v))
    }
  }

  private pushTextLong(b: Uint8Array): void {
    let s = latin1.decode(b).trim()
    if (s.endsWith("L")) s = s.slice(0, -1)
    if (!/^[+-]?\d+$/.test(s)) throw this.fail(`bad LONG ${JSON.stringify(s)}`)
    if (s.length > 10_000) this.rejectedByCodec("LONG of more than 10000 digits")
    this.stack.push(intOf(BigInt(s)))
  }

  /** LONG1/LONG4 payload: little-endian two's complement. */
  private longLE(n: number): PickleValue {
    const b = this.take(n)
    if (n === 0) return { kind: "int", value: 0 }
    if (n <= 6) {
      let v = 0
      for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!
      if (b[n - 1]! >= 0x80) v -= 2 ** (8 * n)
      return { kind: "int", value: v }
    }
    let hex = ""
    for (let i = n - 1; i >= 0; i--) hex += HEX[b[i]!]
    let v = BigInt("0x" + hex)
    if (b[n - 1]! >= 0x80) v -= 1n << BigInt(8 * n)
    return intOf(v)
  }

  private parseTextFloat(b: Uint8Array): number {
    const s = latin1.decode(b).trim()
    const v = parsePythonFloat(s)
    if (v === undefined) throw this.fail(`bad FLOAT ${JSON.stringify(s)}`)
    return v
  }

  /** Protocol-0 STRING: a Python 2 str repr; CPython unescapes it, the codec only strips the quotes. */
  private textString(b: Uint8Array): PBytes {
    const n = b.length
    const q = b[0]
    if (n < 2 || (q !== 0x27 && q !== 0x22) || b[n - 1] !== q) throw this.fail("STRING argument must be quoted")
    const value = escapeDecode(b.subarray(1, n - 1))
    if (value === undefined) throw this.fail("bad escape in STRING")
    const codecText = decodeUtf8(b)
    if (typeof codecText !== "string") {
      this.rejectedByCodec("STRING that is not UTF-8")
      return { kind: "bytes", value, py2: true }
    }
    const trimmed = codecText.trim()
    const inner = (trimmed.startsWith("'") && trimmed.endsWith("'")) || (trimmed.startsWith('"') && trimmed.endsWith('"'))
      ? trimmed.slice(1, -1)
      : trimmed
    const codec = new TextEncoder().encode(inner)
    return sameBytes(codec, value) ? { kind: "bytes", value, py2: true } : { kind: "bytes", value, py2: true, codec }
  }

  /** Protocol-0 UNICODE: raw-unicode-escape; the codec takes the raw line as UTF-8. */
  private textUnicode(b: Uint8Array): PStr {
    const value = rawUnicodeEscapeDecode(b)
    if (value === undefined) throw this.fail("bad \\u escape in UNICODE")
    const codec = decodeUtf8(b)
    const codecValue = typeof codec === "string" ? codec : null
    if (codecValue === null) this.rejectedByCodec("UNICODE that is not UTF-8")
    const surrogates = hasLoneSurrogate(value) ? encodeSurrogatePass(value) : undefined
    if (surrogates !== undefined) this.rejectedByCodec("lone surrogate in a string")
    const node: { kind: "str"; value: string; surrogates?: Uint8Array; codec?: string | null } = {
      kind: "str",
      value
    }
    if (surrogates !== undefined) node.surrogates = surrogates
    if (codecValue !== value) node.codec = codecValue
    return node
  }
}

/** Decodes one pickle from the start of `bytes`. */
export const decodePickle = (bytes: Uint8Array): PickleValue => new PickleReader(bytes).next()

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

const pushAll = (into: Array<PickleValue>, items: ReadonlyArray<PickleValue>): void => {
  for (let i = 0; i < items.length; i++) into.push(items[i]!)
}

const isMutable = (v: PickleValue): boolean =>
  v.kind === "list" || v.kind === "dict" || v.kind === "set" || v.kind === "object"

/** A copy of the container itself; its children are finished objects and stay shared. */
const shallowCopy = (v: PickleValue): PickleValue => {
  switch (v.kind) {
    case "list":
    case "tuple":
    case "dict":
    case "set":
    case "frozenset":
      return { kind: v.kind, items: v.items.slice() } as PickleValue
    case "object": {
      const o: PObject = { kind: "object", op: v.op, callable: v.callable, args: v.args }
      if (v.kwargs !== undefined) o.kwargs = v.kwargs
      if (v.state !== undefined) o.state = v.state
      if (v.rebuilt !== undefined) o.rebuilt = v.rebuilt
      if (v.dictItems !== undefined) o.dictItems = v.dictItems.slice()
      if (v.listItems !== undefined) o.listItems = v.listItems.slice()
      return o
    }
    default:
      return v
  }
}

const sizeOf = (v: PickleValue): number =>
  v.kind === "object" ? 1 + (v.dictItems?.length ?? 0) + (v.listItems?.length ?? 0) : "items" in v ? 1 + v.items.length : 1

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * UTF-8 as CPython's pickle reads it ('utf-8', 'surrogatepass'): a string; `{ value }` when the bytes
 * encode lone surrogates; undefined when they are not UTF-8 at all.
 */
export const decodeUtf8 = (b: Uint8Array): string | { readonly value: string } | undefined => {
  let ascii = true
  for (let i = 0; i < b.length; i++) {
    if (b[i]! >= 0x80) {
      ascii = false
      break
    }
  }
  if (ascii) return latin1.decode(b)
  try {
    return utf8Fatal.decode(b)
  } catch {
    const s = decodeSurrogatePass(b)
    return s === undefined ? undefined : { value: s }
  }
}

/** Strict UTF-8 that also accepts encoded surrogates (ED A0..BF xx); undefined if invalid. */
const decodeSurrogatePass = (b: Uint8Array): string | undefined => {
  const units: Array<number> = []
  let i = 0
  while (i < b.length) {
    const c = b[i]!
    if (c < 0x80) {
      units.push(c)
      i += 1
    } else if (c >= 0xc2 && c <= 0xdf) {
      const c1 = b[i + 1]
      if (c1 === undefined || (c1 & 0xc0) !== 0x80) return undefined
      units.push(((c & 0x1f) << 6) | (c1 & 0x3f))
      i += 2
    } else if (c >= 0xe0 && c <= 0xef) {
      const c1 = b[i + 1]
      const c2 = b[i + 2]
      if (c1 === undefined || c2 === undefined || (c1 & 0xc0) !== 0x80 || (c2 & 0xc0) !== 0x80) return undefined
      const cp = ((c & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (c2 & 0x3f)
      if (cp < 0x800) return undefined
      units.push(cp)
      i += 3
    } else if (c >= 0xf0 && c <= 0xf4) {
      const c1 = b[i + 1]
      const c2 = b[i + 2]
      const c3 = b[i + 3]
      if (
        c1 === undefined || c2 === undefined || c3 === undefined || (c1 & 0xc0) !== 0x80 || (c2 & 0xc0) !== 0x80 ||
        (c3 & 0xc0) !== 0x80
      ) return undefined
      const cp = ((c & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((c2 & 0x3f) << 6) | (c3 & 0x3f)
      if (cp < 0x10000 || cp > 0x10ffff) return undefined
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff))
      i += 4
    } else {
      return undefined
    }
  }
  let s = ""
  for (let j = 0; j < units.length; j += 4096) s += String.fromCharCode(...units.slice(j, j + 4096))
  return s
}

export const hasLoneSurrogate = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
      else return true
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return true
    }
  }
  return false
}

/** UTF-8 with lone surrogates encoded as 3-byte sequences (CPython's 'surrogatepass'). */
export const encodeSurrogatePass = (s: string): Uint8Array => {
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
  return Uint8Array.from(out)
}

/** Python's float() of a str, as protocol-0 FLOAT needs it; undefined if it is not a float. */
export const parsePythonFloat = (s: string): number | undefined => {
  const lower = s.toLowerCase()
  const sign = lower.startsWith("-") ? -1 : 1
  const body = lower.startsWith("-") || lower.startsWith("+") ? lower.slice(1) : lower
  if (body === "inf" || body === "infinity") return sign * Infinity
  if (body === "nan") return NaN
  if (!/^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(body)) return undefined
  return sign * Number(body)
}

/** Python 2 string-escape decoding (codecs.escape_decode), for protocol-0 STRING. */
const escapeDecode = (b: Uint8Array): Uint8Array | undefined => {
  const out: Array<number> = []
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!
    if (c !== 0x5c) {
      out.push(c)
      continue
    }
    i++
    const e = b[i]
    if (e === undefined) return undefined // trailing backslash
    switch (e) {
      case 0x0a: // line continuation
        break
      case 0x5c:
      case 0x27:
      case 0x22:
        out.push(e)
        break
      case 0x61: out.push(7); break
      case 0x62: out.push(8); break
      case 0x66: out.push(12); break
      case 0x6e: out.push(10); break
      case 0x72: out.push(13); break
      case 0x74: out.push(9); break
      case 0x76: out.push(11); break
      case 0x78: { // \xhh
        const h = hexValue(b[i + 1]) * 16 + hexValue(b[i + 2])
        if (!(h >= 0)) return undefined
        out.push(h)
        i += 2
        break
      }
      default:
        if (e >= 0x30 && e <= 0x37) { // \ooo
          let v = e - 0x30
          for (let k = 0; k < 2 && b[i + 1]! >= 0x30 && b[i + 1]! <= 0x37; k++) v = v * 8 + (b[++i]! - 0x30)
          out.push(v & 0xff)
        } else {
          out.push(0x5c, e) // unknown escapes stay as they are
        }
    }
  }
  return Uint8Array.from(out)
}

const hexValue = (c: number | undefined): number => {
  if (c === undefined) return NaN
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  return NaN
}

/** 'raw-unicode-escape': latin-1, except \uXXXX / \UXXXXXXXX after an odd number of backslashes. */
const rawUnicodeEscapeDecode = (b: Uint8Array): string | undefined => {
  let s = ""
  let i = 0
  while (i < b.length) {
    const c = b[i]!
    if (c !== 0x5c) {
      s += String.fromCharCode(c)
      i++
      continue
    }
    const start = i
    while (i < b.length && b[i] === 0x5c) i++
    const run = i - start
    const next = b[i]
    if (run % 2 === 0 || (next !== 0x75 && next !== 0x55)) {
      s += "\\".repeat(run)
      continue
    }
    s += "\\".repeat(run - 1)
    const count = next === 0x75 ? 4 : 8
    let cp = 0
    for (let k = 1; k <= count; k++) {
      const h = hexValue(b[i + k])
      if (!(h >= 0)) return undefined
      cp = cp * 16 + h
    }
    if (cp > 0x10ffff) return undefined
    s += String.fromCodePoint(cp)
    i += 1 + count
  }
  return s
}

