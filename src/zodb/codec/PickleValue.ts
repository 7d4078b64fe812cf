/**
 * The value tree a pickle decodes to (Pickle.ts). It keeps everything the pickle says: ints exactly,
 * floats as floats, str apart from bytes, tuples apart from lists, dicts as ordered pairs with any keys,
 * and every object construction with its callable, its arguments, its BUILD state and the items added
 * after it. Shape follows zodb-json-codec's PickleValue where that loses nothing, so that the codec's JSON
 * (StateJson.ts) is a pure function of this tree.
 *
 * Sharing: an object that the pickle references twice through its memo is the same JS object twice in the
 * tree (a DAG). An object referenced while it was still being built (a recursive structure) is a copy
 * taken at that moment, marked `memoCopy`, so the tree never has a cycle.
 *
 * Byte strings are views into the decoded input, not copies.
 */

export type PickleValue =
  | PNone
  | PBool
  | PInt
  | PFloat
  | PStr
  | PBytes
  | PList
  | PTuple
  | PDict
  | PSet
  | PFrozenSet
  | PGlobal
  | PObject
  | PPersistentRef

export interface PNone {
  readonly kind: "none"
}

export interface PBool {
  readonly kind: "bool"
  readonly value: boolean
}

/** An int: a `number` when it is a safe integer (|v| < 2^53), else a `bigint`. */
export interface PInt {
  readonly kind: "int"
  readonly value: number | bigint
}

/** A float, also when integral (1.0): JSON writes it with a `.` or an exponent. */
export interface PFloat {
  readonly kind: "float"
  readonly value: number
}

export interface PStr {
  readonly kind: "str"
  readonly value: string
  /**
   * The UTF-8 bytes (surrogatepass, as CPython writes them) when the string holds a lone surrogate: JSON
   * (and PostgreSQL) cannot hold it, so writers need the original bytes.
   */
  readonly surrogates?: Uint8Array
  /**
   * How zodb-json-codec reads this string when that differs from CPython (protocol-0 UNICODE, which the
   * codec takes as raw UTF-8 without unescaping): the codec's text, or null when the codec rejects it.
   */
  readonly codec?: string | null
}

export interface PBytes {
  readonly kind: "bytes"
  readonly value: Uint8Array
  /** A Python 2 `str` (STRING, BINSTRING, SHORT_BINSTRING), as opposed to real bytes (BINBYTES...). */
  readonly py2?: true
  /** zodb-json-codec's reading of a protocol-0 STRING when it differs: it only strips the quotes. */
  readonly codec?: Uint8Array
}

export interface PList {
  readonly kind: "list"
  items: Array<PickleValue>
  /** Copied from the memo while still under construction (see the module comment). */
  memoCopy?: true
}

export interface PTuple {
  readonly kind: "tuple"
  readonly items: Array<PickleValue>
  memoCopy?: true
}

/** A dict: `items` holds keys and values alternately, in insertion order (duplicate keys kept). */
export interface PDict {
  readonly kind: "dict"
  items: Array<PickleValue>
  memoCopy?: true
}

export interface PSet {
  readonly kind: "set"
  items: Array<PickleValue>
  memoCopy?: true
}

export interface PFrozenSet {
  readonly kind: "frozenset"
  readonly items: Array<PickleValue>
  memoCopy?: true
}

/** A class or function by name (GLOBAL, STACK_GLOBAL, INST's class). */
export interface PGlobal {
  readonly kind: "global"
  readonly module: string
  readonly name: string
}

/**
 * How an object came about: REDUCE `callable(*args)`, NEWOBJ `cls.__new__(cls, *args)`, NEWOBJ_EX (with
 * `kwargs`), INST / OBJ (protocol 0/1 `cls(*args)`), BYTEARRAY8 (as `bytearray(bytes)`), or "build":
 * BUILD applied to something that is not an object (a class, a list...), kept as `callable` = that thing.
 */
export type ObjectOp = "reduce" | "newobj" | "newobj_ex" | "inst" | "obj" | "bytearray8" | "build"

export interface PObject {
  readonly kind: "object"
  op: ObjectOp
  callable: PickleValue
  args: PickleValue
  kwargs?: PickleValue
  /** The last BUILD's state; absent when no BUILD applied. */
  state?: PickleValue
  /** BUILD applied more than once (the codec then keeps only the last state, without the args). */
  rebuilt?: true
  /** Items set with SETITEM(S) on the object (dict subclasses), keys and values alternately. */
  dictItems?: Array<PickleValue>
  /** Items added with APPEND(S) on the object (list subclasses). */
  listItems?: Array<PickleValue>
  memoCopy?: true
}

/** A persistent reference (BINPERSID / PERSID): `pid` is what the pickler's persistent_id returned. */
export interface PPersistentRef {
  readonly kind: "pref"
  readonly pid: PickleValue
}

export const NONE: PNone = { kind: "none" }
export const TRUE: PBool = { kind: "bool", value: true }
export const FALSE: PBool = { kind: "bool", value: false }
export const EMPTY_TUPLE_ITEMS: ReadonlyArray<PickleValue> = []

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** The int node for `v`, keeping the number/bigint invariant of PInt. */
export const intOf = (v: bigint): PInt =>
  ({ kind: "int", value: v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v })

export const isEmptyTuple = (v: PickleValue): boolean => v.kind === "tuple" && v.items.length === 0
