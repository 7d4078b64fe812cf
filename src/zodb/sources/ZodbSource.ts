/**
 * What zodb-convert reads, whatever the storage: transactions in TID order, each with its records (the
 * record's pickles as the storage holds them), and the bytes of a blob revision. FileStorage and
 * RelStorage (both modes) are the two layers of it.
 */
import { Context, Data, type Effect, Runtime, type Scope, type Stream } from "effect"
import type { Payload } from "../../domain/Payload.ts"

export interface SourceRecord {
  readonly zoid: bigint
  /** the record's two pickles; null: no data (the undo of the object's creation, or deleteObject) */
  readonly data: Uint8Array | null
  /** where the record lies in the source, for messages (a byte offset of Data.fs; undefined in SQL) */
  readonly offset?: number | undefined
  /** for an undo record: the tid of the revision whose bytes it restores (a blob's file may be that one's) */
  readonly dataTid?: bigint | undefined
}

export interface SourceTransaction {
  readonly tid: bigint
  readonly user: Uint8Array
  readonly description: Uint8Array
  /** the pickled extension dict as stored; empty when there is none */
  readonly extension: Uint8Array
  readonly records: ReadonlyArray<SourceRecord>
}

/** The bytes of one blob revision, owned by the caller's scope (a file, or read into a payload). */
export interface BlobContent {
  readonly payload: Payload
  /** lowercase hex SHA-256 and base64 MD5 of the bytes, computed while they were read */
  readonly sha256: string
  readonly md5: string
}

/** Counts for --dry-run and for the progress total. */
export interface SourceCounts {
  readonly transactions: number
  readonly records: number
  readonly bytes: number
}

/** The source cannot be read as a ZODB storage (a damaged file, a missing blob, a lost server). */
export class SourceError extends Data.TaggedError("ZodbSourceError")<{
  readonly source: string
  readonly problem: string
  readonly tid?: bigint | undefined
  readonly zoid?: bigint | undefined
  readonly offset?: number | undefined
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const at = [
      this.tid === undefined ? undefined : `tid ${hex(this.tid)}`,
      this.zoid === undefined ? undefined : `zoid ${hex(this.zoid)}`,
      this.offset === undefined ? undefined : `byte offset ${this.offset}`
    ].filter((part) => part !== undefined)
    return `${this.source}: ${this.problem}${at.length === 0 ? "" : ` (${at.join(", ")})`}`
  }
}

/** 16 lowercase hex digits, as ZODB tools and the fixtures write oids and tids. */
export const hex = (id: bigint): string => BigInt.asUintN(64, id).toString(16).padStart(16, "0")

export class ZodbSource extends Context.Service<ZodbSource, {
  /** the source as shown to users: the file, or the database without credentials */
  readonly describe: string
  /** every transaction with a TID above `after` (all when undefined), in TID order */
  readonly transactions: (after: bigint | undefined) => Stream.Stream<SourceTransaction, SourceError>
  /** the bytes of the blob revision (zoid, tid), in a payload owned by the caller's scope */
  readonly blob: (record: SourceRecord, tid: bigint) => Effect.Effect<BlobContent, SourceError, Scope.Scope>
  /** the size of the blob revision, without reading it (--dry-run) */
  readonly blobSize: (record: SourceRecord, tid: bigint) => Effect.Effect<number, SourceError>
  /** what the copy will read, counted without decoding */
  readonly count: Effect.Effect<SourceCounts, SourceError>
  /** problems found while reading that did not stop it (a half-written last transaction) */
  readonly warnings: Effect.Effect<ReadonlyArray<string>>
}>()("lo-migrate/zodb/ZodbSource") {}
