// A test-only reader of ZODB FileStorage files (Data.fs, format FS21, or FS30 as Python 3 writes it: the same layout), enough to feed the codec tests:
// transactions with their user, description and extension bytes, and data records with their pickle
// (backpointers followed). The real reader lives elsewhere; this one trusts its input.
//
// Layout (ZODB/FileStorage/format.py): the magic, then per transaction
//   tid 8, length 8 (to the redundant length), status 1, user_len 2, desc_len 2, ext_len 2,
//   user, description, extension, data records..., length 8 again;
// per data record
//   oid 8, tid 8, prev 8, tloc 8, vlen 2 (always 0: no versions), plen 8, then plen bytes of data,
//   or when plen is 0 an 8-byte backpointer to the record holding the data (0: no data).
import { readFileSync } from "node:fs"

export interface FsDataRecord {
  readonly oid: string
  readonly tid: string
  /** the pickle, null for a record without data (undone creation, deleteObject) */
  readonly data: Uint8Array | null
  readonly backpointer: boolean
}

export interface FsTransaction {
  readonly tid: string
  readonly status: string
  readonly user: Uint8Array
  readonly description: Uint8Array
  readonly extension: Uint8Array
  readonly records: ReadonlyArray<FsDataRecord>
}

const hex8 = (b: Uint8Array, at: number): string => Buffer.from(b.subarray(at, at + 8)).toString("hex")

export const readFileStorage = (path: string): Array<FsTransaction> => {
  const file = new Uint8Array(readFileSync(path))
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength)
  const magic = Buffer.from(file.subarray(0, 4)).toString("latin1")
  if (magic !== "FS21" && magic !== "FS30") throw new Error(`${path}: not a FileStorage (magic ${JSON.stringify(magic)})`)
  const u64 = (at: number) => Number(view.getBigUint64(at, false))

  const dataAt = (pos: number): Uint8Array | null => {
    for (let hops = 0; hops < 1000; hops++) {
      const vlen = view.getUint16(pos + 32, false)
      if (vlen !== 0) throw new Error(`record at ${pos}: versions (vlen > 0) are not supported`)
      const plen = u64(pos + 34)
      if (plen > 0) return file.subarray(pos + 42, pos + 42 + plen)
      const back = u64(pos + 42)
      if (back === 0) return null
      pos = back
    }
    throw new Error("backpointer loop")
  }

  const out: Array<FsTransaction> = []
  let pos = 4
  while (pos < file.length) {
    const tid = hex8(file, pos)
    const tlen = u64(pos + 8)
    const end = pos + tlen
    const status = String.fromCharCode(file[pos + 16]!)
    const ulen = view.getUint16(pos + 17, false)
    const dlen = view.getUint16(pos + 19, false)
    const elen = view.getUint16(pos + 21, false)
    let at = pos + 23
    const user = file.subarray(at, at + ulen)
    at += ulen
    const description = file.subarray(at, at + dlen)
    at += dlen
    const extension = file.subarray(at, at + elen)
    at += elen
    const records: Array<FsDataRecord> = []
    while (at < end) {
      const plen = u64(at + 34)
      records.push({
        oid: hex8(file, at),
        tid: hex8(file, at + 8),
        data: dataAt(at),
        backpointer: plen === 0 && u64(at + 42) !== 0
      })
      at += 42 + (plen > 0 ? plen : 8)
    }
    if (u64(end) !== tlen) throw new Error(`transaction ${tid}: redundant length differs`)
    out.push({ tid, status, user, description, extension, records })
    pos = end + 8
  }
  return out
}
