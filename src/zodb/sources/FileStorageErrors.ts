/**
 * Errors of reading a FileStorage (Data.fs) and its blob directory. Each names the file, the byte offset
 * and the ids involved, so that the damaged place can be found with a hex viewer or ZODB's fstest.py.
 * Exit codes follow src/domain/Errors.ts: 2 when the input cannot be used at all (found before any
 * work), 1 when the run met damaged data on the way.
 */
import { Data, Runtime } from "effect"
import { withFix } from "../../domain/Errors.ts"

/** 16 lowercase hex digits of an 8-byte id, as the fixtures and zodb-pgjsonb's logs write oids and tids. */
export const hex16 = (id: bigint): string => id.toString(16).padStart(16, "0")

/** The file is missing, unreadable, or not a FileStorage at all (wrong magic). */
export class FileStorageUnreadable extends Data.TaggedError("FileStorageUnreadable")<{
  readonly path: string
  readonly problem: string
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`FileStorage ${this.path}: ${this.problem}`, this.fix)
  }
}

/**
 * The file breaks the format before its end: a header that does not add up, tids out of order, a record
 * that leaves its transaction. (A damaged *last* transaction is not this error but a `TailWarning`:
 * ZODB treats it as an interrupted commit and so does the reader.)
 */
export class FileStorageCorrupt extends Data.TaggedError("FileStorageCorrupt")<{
  readonly path: string
  /** byte offset of the damaged header or record */
  readonly offset: number
  /** the transaction it belongs to, when its header could be read */
  readonly tid: bigint | undefined
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const tid = this.tid === undefined ? "" : ` (transaction ${hex16(this.tid)})`
    return `FileStorage ${this.path} is corrupt at byte ${this.offset}${tid}: ${this.problem}`
  }
}

/** An undo record's backpointer leads nowhere usable: outside the file, forward, or to another object's record. */
export class BackpointerMissing extends Data.TaggedError("BackpointerMissing")<{
  readonly path: string
  readonly tid: bigint
  readonly oid: bigint
  /** offset of the record that holds the backpointer */
  readonly offset: number
  /** the offset the (last followed) backpointer names */
  readonly backpointer: number
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `FileStorage ${this.path}: the record of oid ${hex16(this.oid)} in transaction ${hex16(this.tid)} ` +
      `at byte ${this.offset} has a backpointer to byte ${this.backpointer}, but ${this.problem}`
  }
}

/** The blob directory cannot be used: unknown `.layout`, or not readable. */
export class BlobDirectoryUnusable extends Data.TaggedError("BlobDirectoryUnusable")<{
  readonly path: string
  readonly problem: string
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`blob directory ${this.path}: ${this.problem}`, this.fix)
  }
}

/** A blob record without its blob file. */
export class BlobFileMissing extends Data.TaggedError("BlobFileMissing")<{
  readonly oid: bigint
  readonly tid: bigint
  /** where the file should be (for an undo record: its own tid's file, the one ZODB copies on undo) */
  readonly expected: string
  /** other places that were tried (an undo record's original revision) */
  readonly alsoTried: ReadonlyArray<string>
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const also = this.alsoTried.length === 0 ? "" : ` (nor at ${this.alsoTried.join(", ")})`
    return `blob of oid ${hex16(this.oid)} at transaction ${hex16(this.tid)} has no file: expected ${this.expected}${also}`
  }
}

export type FileStorageError = FileStorageUnreadable | FileStorageCorrupt | BackpointerMissing
