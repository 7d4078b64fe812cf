/**
 * Why a ZODB record cannot be decoded. Each error carries the byte offset in the record and what was
 * found there, so a caller that knows the record's (tid, oid) can name the exact spot.
 */
import { Data } from "effect"

/** The pickle bytes are not a pickle: unknown opcode, truncated, or an opcode that cannot apply here. */
export class PickleError extends Data.TaggedError("PickleError")<{
  /** byte offset of the opcode in the decoded bytes */
  readonly offset: number
  /** the opcode byte, or -1 when the input ended before one */
  readonly opcode: number
  readonly problem: string
}> {
  override get message() {
    const op = this.opcode < 0 ? "end of input" : `opcode 0x${this.opcode.toString(16).padStart(2, "0")}${
      printable(this.opcode)
    }`
    return `pickle at byte ${this.offset} (${op}): ${this.problem}`
  }
}

/** The record's first pickle is not class metadata ZODB writes (a class, or (class, args), or (module, name)). */
export class ClassPickleError extends Data.TaggedError("ClassPickleError")<{
  /** byte offset of the class pickle's end (its STOP opcode) */
  readonly offset: number
  /** what the class pickle holds, briefly */
  readonly found: string
}> {
  override get message() {
    return `class pickle ending at byte ${this.offset} is not a class: found ${this.found}`
  }
}

/** The state pickle decoded, but has no JSON form (zodb-json-codec fails on it too). */
export class StateError extends Data.TaggedError("StateError")<{
  /** byte offset where the state pickle starts */
  readonly offset: number
  /** where in the state, as a path like /data/items/3 */
  readonly path: string
  readonly problem: string
}> {
  override get message() {
    return `state pickle at byte ${this.offset}, at ${this.path === "" ? "/" : this.path}: ${this.problem}`
  }
}

export type RecordError = PickleError | ClassPickleError | StateError

const printable = (op: number): string => op >= 0x21 && op <= 0x7e ? ` '${String.fromCharCode(op)}'` : ""
