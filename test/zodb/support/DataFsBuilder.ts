// Builds FileStorage files byte by byte, for the cases the golden fixtures do not have (undo chains,
// "u" and "c" transactions, FS21, bad backpointers, big files). The layout is ZODB's format.py; the
// fixtures (written by real ZODB) check that the reader agrees with ZODB, these check the edges.

export type RecordSpec =
  | { readonly oid: bigint; readonly data: Uint8Array }
  /** an undo record: its backpointer is the offset of `oid`'s record in transaction `backTo` */
  | { readonly oid: bigint; readonly backTo: bigint }
  /** a record with neither data nor backpointer (undone creation, deleteObject) */
  | { readonly oid: bigint; readonly noData: true }
  /** a record with a raw backpointer value */
  | { readonly oid: bigint; readonly rawBack: number }

export interface TxnSpec {
  readonly tid: bigint
  readonly status?: string
  readonly user?: string
  readonly description?: string
  readonly extension?: Uint8Array
  readonly records: ReadonlyArray<RecordSpec>
}

export interface Built {
  readonly bytes: Uint8Array
  /** offset of each transaction header, in order */
  readonly txnOffsets: ReadonlyArray<number>
  /** offset of each transaction's end (after its redundant length) */
  readonly txnEnds: ReadonlyArray<number>
  /** `${tid}:${oid}` -> record offset */
  readonly recordOffsets: ReadonlyMap<string, number>
}

const u64 = (n: number | bigint) => {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt(n))
  return b
}
const u16 = (n: number) => {
  const b = new Uint8Array(2)
  new DataView(b.buffer).setUint16(0, n)
  return b
}
const concat = (parts: ReadonlyArray<Uint8Array>) => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

export const buildDataFs = (txns: ReadonlyArray<TxnSpec>, magic = "FS30"): Built => {
  const parts: Array<Uint8Array> = [new TextEncoder().encode(magic)]
  let pos = 4
  const txnOffsets: Array<number> = []
  const txnEnds: Array<number> = []
  const recordOffsets = new Map<string, number>()
  const lastOf = new Map<bigint, number>()
  for (const t of txns) {
    const user = new TextEncoder().encode(t.user ?? "")
    const description = new TextEncoder().encode(t.description ?? "")
    const extension = t.extension ?? new Uint8Array(0)
    const tpos = pos
    const records: Array<Uint8Array> = []
    let at = tpos + 23 + user.length + description.length + extension.length
    for (const r of t.records) {
      const prev = lastOf.get(r.oid) ?? 0
      let body: Uint8Array
      let plen: number
      if ("data" in r) {
        body = r.data
        plen = r.data.length
      } else if ("backTo" in r) {
        const target = recordOffsets.get(`${r.backTo}:${r.oid}`)
        if (target === undefined) throw new Error(`no record of ${r.oid} in ${r.backTo}`)
        body = u64(target)
        plen = 0
      } else if ("rawBack" in r) {
        body = u64(r.rawBack)
        plen = 0
      } else {
        body = u64(0)
        plen = 0
      }
      const header = concat([u64(r.oid), u64(t.tid), u64(prev), u64(tpos), u16(0), u64(plen)])
      records.push(header, body)
      recordOffsets.set(`${t.tid}:${r.oid}`, at)
      lastOf.set(r.oid, at)
      at += header.length + body.length
    }
    const tlen = at - tpos
    const status = new TextEncoder().encode(t.status ?? " ")
    parts.push(
      u64(t.tid), u64(tlen), status, u16(user.length), u16(description.length), u16(extension.length),
      user, description, extension, ...records, u64(tlen)
    )
    txnOffsets.push(tpos)
    pos = at + 8
    txnEnds.push(pos)
  }
  return { bytes: concat(parts), txnOffsets, txnEnds, recordOffsets }
}

/** Offsets of the transaction headers (and ends) of a real file, walked by the redundant lengths. */
export const transactionBounds = (bytes: Uint8Array): { readonly starts: Array<number>; readonly ends: Array<number> } => {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const starts: Array<number> = []
  const ends: Array<number> = []
  let pos = 4
  while (pos < bytes.length) {
    const tlen = Number(v.getBigUint64(pos + 8))
    starts.push(pos)
    pos += tlen + 8
    ends.push(pos)
  }
  return { starts, ends }
}

/** Offsets of the data record headers of the transaction at `tpos` of a real file. */
export const recordBounds = (bytes: Uint8Array, tpos: number): Array<number> => {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const tend = tpos + Number(v.getBigUint64(tpos + 8))
  let pos = tpos + 23 + v.getUint16(tpos + 17) + v.getUint16(tpos + 19) + v.getUint16(tpos + 21)
  const out: Array<number> = []
  while (pos < tend) {
    out.push(pos)
    const plen = Number(v.getBigUint64(pos + 34))
    pos += 42 + (plen === 0 ? 8 : plen)
  }
  return out
}
