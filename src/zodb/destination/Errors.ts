/**
 * Errors of the zodb-pgjsonb destination, in the style of src/domain/Errors.ts: a readable message, the
 * data to act on, and the exit code through `Runtime.errorExitCode` (2: found before any work; 1: the run
 * failed). SQL failures during the run are the project's `DatabaseError`.
 */
import { Data, Runtime } from "effect"

/**
 * The destination holds tables that are not zodb-pgjsonb's (e.g. RelStorage's `object_state`, whose
 * columns are zoid, tid, prev_tid, md5, state_size, state bytea): writing into them would corrupt both.
 */
export class DestinationNotPgJsonb extends Data.TaggedError("DestinationNotPgJsonb")<{
  /** where, e.g. `database zodb schema public` */
  readonly where: string
  readonly table: string
  /** what was found, e.g. the table's columns */
  readonly found: string
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return `destination ${this.where}: ${this.table} is not zodb-pgjsonb's (${this.found}): ${this.problem}; ` +
      `zodb-convert writes into an empty database or one that zodb-pgjsonb created`
  }
}

/**
 * The destination has a zodb-pgjsonb schema that does not fit this copy: the other history mode, or a
 * table, column, index, trigger or sequence that differs from what zodb-pgjsonb 1.14 creates.
 */
export class DestinationSchemaMismatch extends Data.TaggedError("DestinationSchemaMismatch")<{
  readonly where: string
  /** the mode this copy writes */
  readonly historyPreserving: boolean
  /** one line per difference */
  readonly differences: ReadonlyArray<string>
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    const mode = this.historyPreserving ? "history-preserving" : "history-free"
    return `destination ${this.where} does not match zodb-pgjsonb 1.14's ${mode} schema: ${this.differences.join("; ")}`
  }
}

/**
 * A source transaction that cannot be written as zodb-pgjsonb stores it (text that is not UTF-8 or holds
 * NUL, JSON with `\u0000`, a blob without exactly one of data / s3 key, ...). Nothing of it was written.
 */
export class InvalidTransaction extends Data.TaggedError("InvalidTransaction")<{
  readonly tid: bigint
  /** the record's oid, when one record is at fault */
  readonly zoid?: bigint | undefined
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const hex = (n: bigint) => `0x${BigInt.asUintN(64, n).toString(16).padStart(16, "0")}`
    return `transaction ${hex(this.tid)}${this.zoid === undefined ? "" : ` oid ${hex(this.zoid)}`}: ${this.problem}`
  }
}
