/**
 * Errors of the zodb-pgjsonb destination, in the style of src/domain/Errors.ts: a readable message, the
 * data to act on, and the exit code through `Runtime.errorExitCode` (2: found before any work; 1: the run
 * failed). SQL failures during the run are the project's `DatabaseError`.
 */
import { Data, Runtime } from "effect"
import { withFix } from "../../domain/Errors.ts"

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
  get fix(): string {
    return "zodb-convert writes only into an empty database or one that zodb-pgjsonb created: point the dsn of " +
      "<pgjsonb destination> at such a database (e.g. a new one: CREATE DATABASE zodb_pgjsonb;)"
  }
  override get message() {
    return withFix(`destination ${this.where}: ${this.table} is not zodb-pgjsonb's (${this.found}): ${this.problem}`, this.fix)
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
  /** the destination is of the other history mode: the config's `history-preserving` does not fit it */
  readonly otherMode?: boolean | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    return this.otherMode === true
      ? `set history-preserving ${this.historyPreserving ? "false" : "true"} in <pgjsonb destination> to match it, ` +
        "or convert into an empty database"
      : "convert into an empty database (point the dsn of <pgjsonb destination> at a new one), or bring this one's " +
        "schema back to what zodb-pgjsonb 1.14 creates"
  }
  override get message() {
    const mode = this.historyPreserving ? "history-preserving" : "history-free"
    return withFix(`destination ${this.where} does not match zodb-pgjsonb 1.14's ${mode} schema: ${this.differences.join("; ")}`, this.fix)
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
