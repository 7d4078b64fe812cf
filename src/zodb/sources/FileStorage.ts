/**
 * Reads a ZODB FileStorage (Data.fs) as a stream of transactions in file order, which is tid order,
 * the way ZODB's `FileIterator` does (src/ZODB/FileStorage/FileStorage.py), with the checks of its
 * `read_index` and `checkTxn`/`checkData` on top, for a converter must not copy a damaged file silently.
 *
 * Memory stays flat whatever the file size: the file is read through one reused window of
 * `windowBytes`; only the transaction being yielded (its records' bytes) is held. An undo record's
 * backpointer is followed to the bytes it names (through chains of undos), read through a second small
 * window so the sequential one is not thrown away.
 *
 * The end of the file: the size is taken when the file is opened (ZODB only appends; a pack replaces the
 * file, and the open handle keeps the old one). A last transaction that is not complete there (the file
 * ends inside it, or its status is "c": voted, never finished) is what ZODB treats as an interrupted
 * commit: it is not data, and the reader ends before it with a `TailWarning` naming its offset. The same
 * damage *followed by* intact transactions is corruption (`FileStorageCorrupt`), never a quiet end: the
 * last 8 bytes of an intact file are the last transaction's redundant length, which tells the two apart.
 */
import { Effect, Stream } from "effect"
import * as NodeFs from "node:fs/promises"
import {
  BackpointerMissing,
  FileStorageCorrupt,
  type FileStorageError,
  FileStorageUnreadable,
  hex16
} from "./FileStorageErrors.ts"
import {
  DATA_HEADER_LENGTH,
  dataRecordLength,
  decodeDataHeader,
  decodeTxnHeader,
  isMagic,
  type Magic,
  MAGIC_LENGTH,
  TXN_HEADER_LENGTH,
  type TxnHeader,
  txnHeaderLength,
  u64
} from "./FileStorageFormat.ts"

/** One data record of a transaction. */
export interface DataRecord {
  readonly oid: bigint
  /** = the transaction's tid */
  readonly tid: bigint
  /** byte offset of the record's header */
  readonly offset: number
  /**
   * The pickle. For an undo record, the bytes its backpointer chain leads to. `null` when the record has
   * no data: the undo of the object's creation, or `deleteObject` (zodb-pgjsonb skips these records).
   */
  readonly data: Uint8Array | null
  /**
   * For an undo record (plen 0, non-zero backpointer): the tid of the record the backpointer names, as
   * ZODB's iterator reports it (`data_txn`); null for an ordinary record or a record without data.
   */
  readonly backpointerTid: bigint | null
  /** the tid of the record whose bytes `data` holds (= `tid` for an ordinary record); null without data */
  readonly dataTid: bigint | null
}

export interface Transaction {
  readonly tid: bigint
  /** " " committed, "p" committed and packed ("u" transactions are skipped, as ZODB's index does) */
  readonly status: " " | "p"
  readonly user: Uint8Array
  readonly description: Uint8Array
  /** the pickled extension dict, as stored (empty when there is none) */
  readonly extension: Uint8Array
  /** byte offset of the transaction header */
  readonly offset: number
  readonly records: ReadonlyArray<DataRecord>
}

/** The committed data ended before the end of the file: an interrupted commit, as ZODB sees it on open. */
export interface TailWarning {
  readonly _tag: "TailWarning"
  readonly path: string
  /** where the ignored bytes start (the header of the unfinished transaction) */
  readonly offset: number
  /** how many bytes at the end of the file are not committed data */
  readonly ignoredBytes: number
  /** the unfinished transaction's tid, when its header was complete */
  readonly tid: bigint | undefined
  readonly problem: string
}

export const describeWarning = (w: TailWarning): string =>
  `FileStorage ${w.path}: the last ${w.ignoredBytes} byte(s) from byte ${w.offset}` +
  `${w.tid === undefined ? "" : ` (transaction ${hex16(w.tid)})`} are not a committed transaction and are ` +
  `ignored, as ZODB does on open: ${w.problem}`

export interface ReadOptions {
  /** only transactions with a tid greater than this one (resume after the last copied transaction) */
  readonly afterTid?: bigint
  /** told when the file ends in an unfinished transaction; without it the warning is logged */
  readonly onWarning?: (warning: TailWarning) => Effect.Effect<void>
  /** size of the read window (default 1 MiB) */
  readonly windowBytes?: number
}

/** What a dry run reports: counts without reading any pickle. */
export interface Scan {
  readonly magic: Magic
  readonly fileBytes: number
  readonly transactions: number
  /** every data record, of every kind */
  readonly records: number
  readonly dataRecords: number
  readonly backpointerRecords: number
  readonly noDataRecords: number
  /** the sum of the pickle lengths of the data records (undo records reuse earlier bytes) */
  readonly pickleBytes: number
  /** "u" transactions, skipped */
  readonly skippedUndone: number
  readonly firstTid: bigint | undefined
  readonly lastTid: bigint | undefined
  readonly warning: TailWarning | undefined
}

const DEFAULT_WINDOW = 1 << 20
const BACK_WINDOW = 64 << 10

/** Positional reads through one reused buffer; views it hands out are valid until the next call. */
class Window {
  private readonly buf: Uint8Array
  readonly view: DataView
  private start = 0
  private end = 0

  constructor(private readonly fh: NodeFs.FileHandle, private readonly size: number, capacity: number) {
    this.buf = new Uint8Array(capacity)
    this.view = new DataView(this.buf.buffer)
  }

  /** Makes [pos, pos + len) available and returns its index in `view`; the caller checked pos + len <= size. */
  async at(pos: number, len: number): Promise<number> {
    if (pos >= this.start && pos + len <= this.end) return pos - this.start
    const want = Math.min(this.buf.length, this.size - pos)
    if (want < len) throw new RangeError(`window of ${this.buf.length} bytes asked for ${len}`)
    const got = await readFully(this.fh, this.buf, 0, want, pos)
    this.start = pos
    this.end = pos + got
    if (got < len) throw new FileShrank(pos + got)
    return 0
  }

  /** A fresh copy of [pos, pos + len); large ones are read straight into their own buffer. */
  async copy(pos: number, len: number): Promise<Uint8Array> {
    if (pos >= this.start && pos + len <= this.end) return this.buf.slice(pos - this.start, pos - this.start + len)
    if (len <= this.buf.length >> 2) {
      const i = await this.at(pos, len)
      return this.buf.slice(i, i + len)
    }
    const out = new Uint8Array(len)
    const got = await readFully(this.fh, out, 0, len, pos)
    if (got < len) throw new FileShrank(pos + got)
    return out
  }
}

/** The file got shorter while being read (it was truncated under us). */
class FileShrank extends Error {
  constructor(readonly at: number) {
    super(`the file ended at byte ${at} while being read (truncated by another process?)`)
  }
}

const readFully = async (fh: NodeFs.FileHandle, buf: Uint8Array, offset: number, length: number, position: number) => {
  let got = 0
  while (got < length) {
    const { bytesRead } = await fh.read(buf, offset + got, length - got, position + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return got
}

/** "full": records with their bytes; "headers": records without bytes, for counting. */
type Mode = "full" | "headers"

interface Counts {
  transactions: number
  records: number
  dataRecords: number
  backpointerRecords: number
  noDataRecords: number
  pickleBytes: number
  skippedUndone: number
  firstTid: bigint | undefined
  lastTid: bigint | undefined
}

/**
 * The reading loop over an open file. `next` returns the following transaction, or undefined at the end
 * (then `warning` tells whether the file ended in an unfinished transaction). Errors are thrown as the
 * tagged errors of FileStorageErrors.ts; the Effect API below turns them into failures.
 */
export class Cursor {
  private pos = MAGIC_LENGTH
  private lastTid = -1n
  private done = false
  warning: TailWarning | undefined = undefined
  private readonly win: Window
  private readonly back: Window
  /** what was read (the transactions at or before `afterTid` are not counted) */
  readonly counts: Counts = {
    transactions: 0,
    records: 0,
    dataRecords: 0,
    backpointerRecords: 0,
    noDataRecords: 0,
    pickleBytes: 0,
    skippedUndone: 0,
    firstTid: undefined,
    lastTid: undefined
  }

  private constructor(
    readonly path: string,
    private readonly fh: NodeFs.FileHandle,
    readonly size: number,
    readonly magic: Magic,
    private readonly mode: Mode,
    private readonly afterTid: bigint | undefined,
    windowBytes: number
  ) {
    this.win = new Window(fh, size, Math.max(windowBytes, 4096))
    this.back = new Window(fh, size, BACK_WINDOW)
  }

  static async open(
    path: string,
    options: { readonly mode?: Mode; readonly afterTid?: bigint | undefined; readonly windowBytes?: number | undefined } = {}
  ): Promise<Cursor> {
    const mode = options.mode ?? "full"
    const windowBytes = options.windowBytes ?? DEFAULT_WINDOW
    const fh = await NodeFs.open(path, "r")
    try {
      const { size } = await fh.stat()
      // ZODB opens an empty file as an empty storage
      if (size === 0) return new Cursor(path, fh, 0, "FS30", mode, options.afterTid, windowBytes)
      const head = new Uint8Array(MAGIC_LENGTH)
      const got = await readFully(fh, head, 0, MAGIC_LENGTH, 0)
      const magic = String.fromCharCode(...head.subarray(0, got))
      if (!isMagic(magic)) {
        throw new FileStorageUnreadable({
          path,
          problem: `not a FileStorage: it starts with ${JSON.stringify(magic)}, expected "FS30" (or Python 2's "FS21")`,
          fix: pathFix
        })
      }
      return new Cursor(path, fh, size, magic, mode, options.afterTid, windowBytes)
    } catch (e) {
      await fh.close()
      throw e
    }
  }

  close(): Promise<void> {
    return this.fh.close()
  }

  /** The next transaction after `afterTid`, or undefined at the end of the committed data. */
  async next(): Promise<Transaction | undefined> {
    while (!this.done) {
      const t = await this.step()
      if (t !== undefined) return t
    }
    return undefined
  }

  private corrupt(offset: number, tid: bigint | undefined, problem: string): never {
    throw new FileStorageCorrupt({ path: this.path, offset, tid, problem })
  }

  /**
   * The transaction at `pos` does not add up. If intact transactions follow it, or it is itself complete
   * (only its header is damaged), that is corruption; otherwise the file ends in an unfinished commit (a
   * crash, or a commit still running). An intact file's last 8 bytes are the redundant length of its last
   * transaction, so they tell: do they lead back to a consistent header after `pos`, or to `pos` itself?
   * (The bytes at the end of a cut-off file are whatever the cut left there.)
   */
  private async damagedHeader(pos: number, tid: bigint | undefined, problem: string, unfinished = false): Promise<undefined> {
    const last = await this.lastTransactionStart(pos)
    if (last === "after") this.corrupt(pos, tid, `${problem}, and intact transactions follow`)
    if (last === "here" && !unfinished) {
      this.corrupt(pos, tid, `${problem}; the transaction is complete (the file's last redundant length leads to it), so its header is damaged`)
    }
    this.warning = { _tag: "TailWarning", path: this.path, offset: pos, ignoredBytes: this.size - pos, tid, problem }
    this.done = true
    return undefined
  }

  /** Where the file's trailing redundant length leads: to a consistent header after `pos`, to `pos`, or nowhere. */
  private async lastTransactionStart(pos: number): Promise<"after" | "here" | "none"> {
    if (this.size - pos < TXN_HEADER_LENGTH + 8) return "none"
    const rtl = u64(this.back.view, await this.back.at(this.size - 8, 8))
    const start = this.size - 8 - rtl
    if (start === pos) return "here"
    if (!(start > pos && start + TXN_HEADER_LENGTH <= this.size - 8)) return "none"
    const h = decodeTxnHeader(this.back.view, await this.back.at(start, TXN_HEADER_LENGTH))
    const consistent = h.tlen === rtl && " pcu".includes(h.status) && h.tid > this.lastTid && txnHeaderLength(h) <= h.tlen
    return consistent ? "after" : "none"
  }

  /** One transaction: undefined when it was skipped ("u", or not after `afterTid`) or at the end. */
  private async step(): Promise<Transaction | undefined> {
    const pos = this.pos
    const size = this.size
    if (pos >= size) {
      this.done = true
      return undefined
    }
    if (size - pos < TXN_HEADER_LENGTH) {
      return this.damagedHeader(pos, undefined, "the file ends inside a transaction header")
    }
    const h = decodeTxnHeader(this.win.view, await this.win.at(pos, TXN_HEADER_LENGTH))
    const tend = pos + h.tlen
    if (h.status === "c") {
      return this.damagedHeader(pos, h.tid, 'the transaction has status "c": it was voted but never finished', true)
    }
    if (!" pu".includes(h.status)) {
      return this.damagedHeader(pos, h.tid, `invalid transaction status ${JSON.stringify(h.status)}`)
    }
    if (h.tid <= this.lastTid) {
      return this.damagedHeader(pos, h.tid, `tid ${hex16(h.tid)} is not greater than the previous ${hex16(this.lastTid)}`)
    }
    if (h.tlen < txnHeaderLength(h)) {
      return this.damagedHeader(pos, h.tid, `transaction length ${h.tlen} is shorter than its header (${txnHeaderLength(h)})`)
    }
    if (tend + 8 > size) {
      return this.damagedHeader(pos, h.tid, `the transaction (${h.tlen + 8} bytes) runs past the end of the file`)
    }
    const rtl = u64(this.win.view, await this.win.at(tend, 8))
    if (rtl !== h.tlen) {
      return this.damagedHeader(pos, h.tid, `the redundant transaction length ${rtl} at byte ${tend} differs from ${h.tlen}`)
    }
    this.lastTid = h.tid
    this.pos = tend + 8
    // resuming: the transactions up to afterTid are passed by their lengths, their records never read
    if (this.afterTid !== undefined && h.tid <= this.afterTid) return undefined
    if (h.status === "u") {
      this.counts.skippedUndone++
      return undefined
    }
    const mode = this.mode

    let at = pos + TXN_HEADER_LENGTH
    let user: Uint8Array = EMPTY, description: Uint8Array = EMPTY, extension: Uint8Array = EMPTY
    if (mode === "full") {
      user = await this.win.copy(at, h.ulen)
      description = await this.win.copy(at + h.ulen, h.dlen)
      extension = await this.win.copy(at + h.ulen + h.dlen, h.elen)
    }
    at += h.ulen + h.dlen + h.elen
    const records: Array<DataRecord> = []
    while (at < tend) {
      const { record, next } = await this.record(h, pos, tend, at, mode)
      records.push(record)
      at = next
    }
    const c = this.counts
    c.transactions++
    c.firstTid ??= h.tid
    c.lastTid = h.tid
    return { tid: h.tid, status: h.status as " " | "p", user, description, extension, offset: pos, records }
  }

  private async record(
    th: TxnHeader,
    tpos: number,
    tend: number,
    pos: number,
    mode: Mode
  ): Promise<{ readonly record: DataRecord; readonly next: number }> {
    const tid = th.tid
    if (pos + DATA_HEADER_LENGTH > tend) {
      this.corrupt(pos, tid, `a data record header (${DATA_HEADER_LENGTH} bytes) runs past the end of its transaction at byte ${tend}`)
    }
    const i = await this.win.at(pos, DATA_HEADER_LENGTH + 8 <= tend - pos ? DATA_HEADER_LENGTH + 8 : DATA_HEADER_LENGTH)
    const d = decodeDataHeader(this.win.view, i)
    if (d.vlen !== 0) this.corrupt(pos, tid, `data record with version length ${d.vlen} (ZODB has no versions: it must be 0)`)
    if (d.tid !== tid) this.corrupt(pos, tid, `data record of oid ${hex16(d.oid)} carries tid ${hex16(d.tid)}, not its transaction's`)
    if (d.tloc !== tpos) this.corrupt(pos, tid, `data record of oid ${hex16(d.oid)} points to a transaction at byte ${d.tloc}, not ${tpos}`)
    if (d.prev >= pos) this.corrupt(pos, tid, `data record of oid ${hex16(d.oid)} has a previous-record pointer ${d.prev} that is not before it`)
    const length = dataRecordLength(d)
    if (pos + length > tend) {
      this.corrupt(pos, tid, `data record of oid ${hex16(d.oid)} (${length} bytes) runs past the end of its transaction at byte ${tend}`)
    }
    const c = this.counts
    c.records++
    if (d.plen > 0) {
      c.dataRecords++
      c.pickleBytes += d.plen
      const data = mode === "full" ? await this.win.copy(pos + DATA_HEADER_LENGTH, d.plen) : null
      return { record: { oid: d.oid, tid, offset: pos, data, backpointerTid: null, dataTid: tid }, next: pos + length }
    }
    const back = u64(this.win.view, await this.win.at(pos + DATA_HEADER_LENGTH, 8))
    if (back === 0) {
      c.noDataRecords++
      return { record: { oid: d.oid, tid, offset: pos, data: null, backpointerTid: null, dataTid: null }, next: pos + length }
    }
    c.backpointerRecords++
    if (back >= pos) this.backpointerMissing(d.oid, tid, pos, back, "that is not before the record")
    if (mode !== "full") {
      return { record: { oid: d.oid, tid, offset: pos, data: null, backpointerTid: null, dataTid: null }, next: pos + length }
    }
    const resolved = await this.resolve(d.oid, tid, pos, back)
    return { record: { oid: d.oid, tid, offset: pos, ...resolved }, next: pos + length }
  }

  private backpointerMissing(oid: bigint, tid: bigint, offset: number, backpointer: number, problem: string): never {
    throw new BackpointerMissing({ path: this.path, oid, tid, offset, backpointer, problem })
  }

  /** Follows a backpointer chain (ZODB's `_loadBack_impl` with fail=False); each link must go backward. */
  private async resolve(oid: bigint, tid: bigint, offset: number, first: number) {
    let back = first
    let limit = offset
    let backpointerTid: bigint | undefined
    while (true) {
      // `limit`: the record must end before the one that points to it
      if (back < MAGIC_LENGTH || back + DATA_HEADER_LENGTH > limit) {
        this.backpointerMissing(oid, tid, offset, back, back === first ? "there is no record there" : "the chain leads outside the file")
      }
      const d = decodeDataHeader(this.back.view, await this.back.at(back, DATA_HEADER_LENGTH))
      if (d.oid !== oid) this.backpointerMissing(oid, tid, offset, back, `the record there belongs to oid ${hex16(d.oid)}`)
      if (d.vlen !== 0 || d.tid > tid) this.backpointerMissing(oid, tid, offset, back, "there is no valid record there")
      backpointerTid ??= d.tid
      if (d.plen > 0) {
        if (back + DATA_HEADER_LENGTH + d.plen > limit) {
          this.backpointerMissing(oid, tid, offset, back, `the record there claims ${d.plen} bytes of data that run past the records after it`)
        }
        const data = await this.back.copy(back + DATA_HEADER_LENGTH, d.plen)
        return { data, backpointerTid, dataTid: d.tid }
      }
      if (back + DATA_HEADER_LENGTH + 8 > limit) this.backpointerMissing(oid, tid, offset, back, "there is no valid record there")
      const next = u64(this.back.view, await this.back.at(back + DATA_HEADER_LENGTH, 8))
      if (next === 0) return { data: null, backpointerTid, dataTid: null } // the chain ends in an undone creation
      if (next >= back) this.backpointerMissing(oid, tid, offset, next, "the chain does not lead backward")
      limit = back
      back = next
    }
  }
}

const EMPTY = new Uint8Array(0)

const pathFix = "check path in the <filestorage> section of the config: it names the Data.fs file"

const toError = (path: string) => (e: unknown): FileStorageError => {
  if (e instanceof FileStorageCorrupt || e instanceof BackpointerMissing || e instanceof FileStorageUnreadable) return e
  if (e instanceof FileShrank) return new FileStorageUnreadable({ path, problem: e.message })
  const code = (e as { readonly code?: unknown }).code
  if (code === "ENOENT") return new FileStorageUnreadable({ path, problem: "no such file", fix: pathFix })
  if (code === "EACCES") {
    return new FileStorageUnreadable({ path, problem: "permission denied", fix: "run zodb-convert as a user that may read the file (e.g. its owner)" })
  }
  if (code === "EISDIR") return new FileStorageUnreadable({ path, problem: "is a directory, not a Data.fs file", fix: pathFix })
  return new FileStorageUnreadable({ path, problem: e instanceof Error ? e.message : String(e) })
}

const attempt = <A>(path: string, f: () => Promise<A>): Effect.Effect<A, FileStorageError> =>
  Effect.tryPromise({ try: f, catch: toError(path) })

/** Opens the file for the life of the scope. */
export const open = (path: string, options: Parameters<typeof Cursor.open>[1] = {}) =>
  Effect.acquireRelease(
    attempt(path, () => Cursor.open(path, options)),
    (cursor) => Effect.promise(() => cursor.close())
  )

const reportWarning = (cursor: Cursor, options: ReadOptions) =>
  Effect.suspend(() => {
    const w = cursor.warning
    if (w === undefined) return Effect.void
    return options.onWarning === undefined ? Effect.logWarning(describeWarning(w)) : options.onWarning(w)
  })

/**
 * The committed transactions of a Data.fs, in file (= tid) order, each with its records' bytes; with
 * `afterTid`, only those after it, found by skipping from header to header (no record is read).
 */
export const transactions = (path: string, options: ReadOptions = {}): Stream.Stream<Transaction, FileStorageError> =>
  Stream.unwrap(Effect.map(
    open(path, { afterTid: options.afterTid, windowBytes: options.windowBytes }),
    (cursor) =>
      Stream.unfold(undefined, () =>
        Effect.flatMap(
          attempt(path, () => cursor.next()),
          (t) => t === undefined ? Effect.as(reportWarning(cursor, options), undefined) : Effect.succeed([t, undefined] as const)
        ))
  ))

/** Counts a Data.fs (or its part after `afterTid`) without reading any pickle: the dry run. */
export const scan = (
  path: string,
  options: { readonly afterTid?: bigint; readonly windowBytes?: number } = {}
): Effect.Effect<Scan, FileStorageError> =>
  Effect.scoped(Effect.gen(function*() {
    const cursor = yield* open(path, { mode: "headers", afterTid: options.afterTid, windowBytes: options.windowBytes })
    yield* attempt(path, async () => {
      while ((await cursor.next()) !== undefined) { /* counting happens in the cursor */ }
    })
    return { magic: cursor.magic, fileBytes: cursor.size, ...cursor.counts, warning: cursor.warning }
  }))
