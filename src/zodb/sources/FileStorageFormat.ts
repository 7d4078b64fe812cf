/**
 * The byte layout of a FileStorage file, as ZODB's src/ZODB/FileStorage/format.py documents it:
 *
 *   file         = magic(4) transaction*
 *   transaction  = tid(8) tlen(8) status(1) ulen(2) dlen(2) elen(2) user description extension
 *                  data-record* tlen(8)              -- tlen = transaction length - 8, written twice
 *   data-record  = oid(8) tid(8) prev(8) tloc(8) vlen(2) plen(8) (pickle(plen) | backpointer(8) if plen = 0)
 *
 * All numbers are big-endian. `prev` is the offset of the object's previous record, `tloc` the offset of
 * its transaction; `vlen` (once the version length) must be 0. A record with plen 0 is an undo record: its
 * backpointer names an earlier record whose data it reuses, 0 meaning "no data" (the undo of a creation,
 * or `deleteObject`).
 *
 * Pure functions over byte views; the reading loop is in FileStorage.ts.
 */

/** Python 3 ZODB (>= 5 on Python 3; the only one of ZODB 6) writes FS30; Python 2 ZODB wrote FS21, same layout. */
export const magics = ["FS30", "FS21"] as const
export type Magic = (typeof magics)[number]

export const TXN_HEADER_LENGTH = 23
export const DATA_HEADER_LENGTH = 42
export const MAGIC_LENGTH = 4

/**
 * Status of a transaction: " " committed, "p" committed and packed, "u" an old non-transactional undo
 * marker whose data ZODB no longer indexes, "c" checkpoint (voted, not finished: only ever the last one).
 */
export type Status = " " | "p" | "u" | "c"

export interface TxnHeader {
  readonly tid: bigint
  /** transaction length - 8, i.e. the offset of the redundant length relative to the header */
  readonly tlen: number
  /** the raw status character (may be anything in a damaged file) */
  readonly status: string
  readonly ulen: number
  readonly dlen: number
  readonly elen: number
}

export interface DataHeader {
  readonly oid: bigint
  readonly tid: bigint
  readonly prev: number
  readonly tloc: number
  readonly vlen: number
  readonly plen: number
}

/**
 * An unsigned 64-bit number as a JS number. Exact below 2^53; above that (never a valid length or offset
 * of a real file) the result is still >= 2^53, so every range check against a file size rejects it.
 */
export const u64 = (view: DataView, at: number): number =>
  view.getUint32(at) * 4294967296 + view.getUint32(at + 4)

/** A DataView over exactly these bytes (the decoders take views so a reader can keep one for its buffer). */
export const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

export const decodeTxnHeader = (v: DataView, at = 0): TxnHeader => {
  return {
    tid: v.getBigUint64(at),
    tlen: u64(v, at + 8),
    status: String.fromCharCode(v.getUint8(at + 16)),
    ulen: v.getUint16(at + 17),
    dlen: v.getUint16(at + 19),
    elen: v.getUint16(at + 21)
  }
}

export const txnHeaderLength = (h: TxnHeader): number => TXN_HEADER_LENGTH + h.ulen + h.dlen + h.elen

export const decodeDataHeader = (v: DataView, at = 0): DataHeader => {
  return {
    oid: v.getBigUint64(at),
    tid: v.getBigUint64(at + 8),
    prev: u64(v, at + 16),
    tloc: u64(v, at + 24),
    vlen: v.getUint16(at + 32),
    plen: u64(v, at + 34)
  }
}

/** A data record's length on disk: header plus pickle, or header plus the 8-byte backpointer. */
export const dataRecordLength = (h: DataHeader): number => DATA_HEADER_LENGTH + (h.plen === 0 ? 8 : h.plen)

export const isMagic = (s: string): s is Magic => (magics as ReadonlyArray<string>).includes(s)
