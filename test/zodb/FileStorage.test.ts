// The FileStorage reader against files written by real ZODB (the golden fixtures: every record in file
// order, with its kind, backpointer tid and bytes) and against built files for the edges: truncation at
// every byte of the last transaction, "c" and "u" transactions, damaged headers, bad backpointers, FS21,
// and flat memory over a file many times the read window.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Ref, Result, Stream } from "effect"
import * as fc from "fast-check"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as FileStorage from "../../src/zodb/sources/FileStorage.ts"
import { hex16 } from "../../src/zodb/sources/FileStorageErrors.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { fixturesDir } from "./support/Fixtures.ts"
import { buildDataFs, recordBounds, transactionBounds } from "./support/DataFsBuilder.ts"

const fixtures = fixturesDir
const mainFs = `${fixtures}/filestorage/Data.fs`
const historyFs = `${fixtures}/filestorage-history/Data.fs`
const benchFs = `${fixtures}/bench-scale/Data.fs`

const jsonl = <A>(path: string): Array<A> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A)

interface ExpectedRecord {
  readonly tid: string
  readonly zoid: string
  readonly kind: "data" | "backpointer" | "no-data"
  readonly backpointer_tid: string | null
  readonly pickle_b64: string | null
  readonly state_size: number
}
interface ExpectedTxn {
  readonly tid: string
  readonly status: string
  readonly user: string
  readonly description: string
  readonly extension_json: string | null
  readonly records: number
}

/** Everything the reader yields, plus the tail warning (collected instead of logged). */
const readAll = (path: string, options: Omit<FileStorage.ReadOptions, "onWarning"> = {}) =>
  Effect.gen(function*() {
    const warnings = yield* Ref.make<Array<FileStorage.TailWarning>>([])
    const txns = yield* Stream.runCollect(FileStorage.transactions(path, {
      ...options,
      onWarning: (w) => Ref.update(warnings, (ws) => [...ws, w])
    }))
    const ws = yield* Ref.get(warnings)
    assert.isAtMost(ws.length, 1)
    return { txns: Array.from(txns), warning: ws[0] }
  })

const kindOf = (r: FileStorage.DataRecord) =>
  r.backpointerTid !== null ? "backpointer" : r.data === null ? "no-data" : "data"

const b64 = (bytes: Uint8Array | null) => bytes === null ? null : Buffer.from(bytes).toString("base64")
const utf8 = (bytes: Uint8Array) => new TextDecoder("utf-8", { fatal: true }).decode(bytes)

const assertMatchesFixture = (txns: ReadonlyArray<FileStorage.Transaction>, records: string, transactions: string) => {
  const expected = jsonl<ExpectedRecord>(`${fixtures}/expected/${records}`)
  const got = txns.flatMap((t) => t.records)
  assert.strictEqual(got.length, expected.length)
  got.forEach((r, i) => {
    const e = expected[i]!
    const where = `record ${i} (${e.tid} ${e.zoid})`
    assert.strictEqual(hex16(r.tid), e.tid, where)
    assert.strictEqual(hex16(r.oid), e.zoid, where)
    assert.strictEqual(kindOf(r), e.kind, where)
    assert.strictEqual(r.backpointerTid === null ? null : hex16(r.backpointerTid), e.backpointer_tid, where)
    assert.strictEqual(b64(r.data), e.pickle_b64, where)
    assert.strictEqual(r.data?.length ?? 0, e.state_size, where)
  })
  const expectedTxns = jsonl<ExpectedTxn>(`${fixtures}/expected/${transactions}`)
  assert.deepStrictEqual(
    txns.map((t) => ({
      tid: hex16(t.tid),
      status: t.status,
      user: utf8(t.user),
      description: utf8(t.description),
      hasExtension: t.extension.length > 0,
      records: t.records.length
    })),
    expectedTxns.map((t) => ({
      tid: t.tid,
      status: t.status,
      user: t.user,
      description: t.description,
      hasExtension: t.extension_json !== null,
      records: t.records
    }))
  )
}

/** Writes `bytes` to a fresh file in `dir` and returns its path. */
const writeFile = (dir: string, name: string, bytes: Uint8Array) => {
  const path = NodePath.join(dir, name)
  NodeFs.writeFileSync(path, bytes)
  return path
}

/** The typed failure of reading the whole file (a defect, i.e. an unhandled exception, fails the test). */
const failureOf = (path: string) =>
  Effect.map(Effect.result(readAll(path)), (r) => Result.isFailure(r) ? r.failure : undefined)

const bytes = (...xs: Array<number>) => new Uint8Array(xs)

describe("FileStorage reader: the golden fixtures written by ZODB", () => {
  it.effect("filestorage/Data.fs: every record in file order, with kind, backpointer tid and bytes; every transaction", () =>
    Effect.gen(function*() {
      const { txns, warning } = yield* readAll(mainFs)
      assert.isUndefined(warning)
      assertMatchesFixture(txns, "filestorage.jsonl", "filestorage-transactions.jsonl")
      // an undo record names the record its backpointer points at, and the bytes come from there
      const undo = txns.flatMap((t) => t.records).filter((r) => r.backpointerTid !== null)
      assert.deepStrictEqual(undo.map((r) => [hex16(r.oid), hex16(r.dataTid!)]), [
        ["0000000000000000", "040d69f33340af33"],
        ["000000000000012b", "040d69f33340af33"]
      ])
    }))

  it.effect("filestorage-history/Data.fs: the same", () =>
    Effect.gen(function*() {
      const { txns, warning } = yield* readAll(historyFs)
      assert.isUndefined(warning)
      assertMatchesFixture(txns, "history.jsonl", "history-transactions.jsonl")
    }))

  it.effect("bench-scale/Data.fs: 502 transactions, 22,350 records, tids of counts.json; scan agrees without reading pickles", () =>
    Effect.gen(function*() {
      const counts = JSON.parse(NodeFs.readFileSync(`${fixtures}/bench-scale/counts.json`, "utf8")) as {
        transactions: number
        data_records: number
        first_tid: string
        last_tid: string
      }
      let transactions = 0, records = 0, bytesRead = 0
      let first: bigint | undefined, last: bigint | undefined
      yield* Stream.runForEach(FileStorage.transactions(benchFs), (t) =>
        Effect.sync(() => {
          transactions++
          records += t.records.length
          bytesRead += t.records.reduce((s, r) => s + (r.data?.length ?? 0), 0)
          first ??= t.tid
          last = t.tid
        }))
      assert.deepStrictEqual([transactions, records], [counts.transactions, counts.data_records])
      assert.deepStrictEqual([hex16(first!), hex16(last!)], [counts.first_tid, counts.last_tid])
      const scan = yield* FileStorage.scan(benchFs)
      assert.deepInclude(scan, {
        magic: "FS30",
        transactions: counts.transactions,
        records: counts.data_records,
        dataRecords: counts.data_records,
        pickleBytes: bytesRead,
        fileBytes: NodeFs.statSync(benchFs).size,
        warning: undefined
      })
      assert.deepStrictEqual([scan.firstTid, scan.lastTid], [first, last])
    }))

  it.effect("scan of filestorage/Data.fs counts each kind of record", () =>
    Effect.gen(function*() {
      const scan = yield* FileStorage.scan(mainFs)
      assert.deepInclude(scan, { transactions: 12, records: 317, backpointerRecords: 2, noDataRecords: 2, dataRecords: 313 })
    }))
})

describe("FileStorage reader: resuming after a tid", () => {
  it.effect("after every tid of both fixtures (and before the first, after the last): exactly the suffix", () =>
    Effect.gen(function*() {
      for (const path of [mainFs, historyFs]) {
        const { txns: all } = yield* readAll(path)
        const tids = all.map((t) => t.tid)
        for (const after of [0n, tids[0]! - 1n, ...tids, tids[tids.length - 1]! + 1n]) {
          const { txns, warning } = yield* readAll(path, { afterTid: after })
          assert.isUndefined(warning)
          const suffix = all.filter((t) => t.tid > after)
          assert.deepStrictEqual(txns, suffix, `after ${hex16(after)}`)
          const scan = yield* FileStorage.scan(path, { afterTid: after })
          assert.strictEqual(scan.transactions, suffix.length)
          assert.strictEqual(scan.records, suffix.reduce((s, t) => s + t.records.length, 0))
        }
      }
    }))
})

describe("FileStorage reader: the end of the file", () => {
  it.effect("cut at every byte offset of the last transaction: the committed prefix and a warning at that transaction", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-cut-")
      for (const source of [mainFs, historyFs]) {
        const whole = NodeFs.readFileSync(source)
        const { starts } = transactionBounds(whole)
        const lastStart = starts[starts.length - 1]!
        const { txns: all } = yield* readAll(source)
        for (let cut = lastStart + 1; cut < whole.length; cut++) {
          const path = writeFile(dir, "Data.fs", whole.subarray(0, cut))
          const { txns, warning } = yield* readAll(path)
          assert.deepStrictEqual(txns.map((t) => t.tid), all.slice(0, -1).map((t) => t.tid), `cut at ${cut}`)
          assert.strictEqual(warning?.offset, lastStart, `cut at ${cut}`)
          assert.strictEqual(warning?.ignoredBytes, cut - lastStart)
        }
      }
    }))

  it.live("property: a file cut anywhere yields the transactions that end before the cut, and a warning iff the cut is inside one", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-cut-prop-")
      const whole = NodeFs.readFileSync(historyFs)
      const { starts, ends } = transactionBounds(whole)
      const { txns: all } = yield* readAll(historyFs)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.integer({ min: 4, max: whole.length }), async (cut) => {
            const path = writeFile(dir, `cut-${cut}.fs`, whole.subarray(0, cut))
            const { txns, warning } = await Effect.runPromise(readAll(path))
            NodeFs.rmSync(path)
            const complete = ends.filter((e) => e <= cut).length
            assert.deepStrictEqual(txns.map((t) => t.tid), all.slice(0, complete).map((t) => t.tid))
            if (ends.includes(cut) || cut === 4) assert.isUndefined(warning)
            else assert.strictEqual(warning?.offset, starts[complete])
          }),
          { numRuns: 300 }
        )
      )
    }))

  it.live("property: any built file cut inside its last transaction (random records, user, description, extension)", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-cut-built-")
      const record = fc.record({ oid: fc.bigInt({ min: 0n, max: 20n }), data: fc.uint8Array({ minLength: 1, maxLength: 300 }) })
      const txn = fc.record({
        user: fc.string({ maxLength: 20 }),
        description: fc.string({ maxLength: 40 }),
        extension: fc.uint8Array({ maxLength: 30 }),
        records: fc.array(record, { maxLength: 6 })
      })
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(txn, { minLength: 1, maxLength: 5 }), fc.double({ min: 0, max: 1, noNaN: true }), async (specs, where) => {
            const built = buildDataFs(specs.map((s, i) => ({ ...s, tid: 0x03d0000000000000n + BigInt(i) * 77n })))
            const lastStart = built.txnOffsets[built.txnOffsets.length - 1]!
            const cut = lastStart + 1 + Math.floor(where * (built.bytes.length - lastStart - 1))
            if (cut >= built.bytes.length) return
            const path = writeFile(dir, "Data.fs", built.bytes.subarray(0, cut))
            const { txns, warning } = await Effect.runPromise(readAll(path))
            assert.strictEqual(txns.length, specs.length - 1)
            assert.strictEqual(warning?.offset, lastStart)
          }),
          { numRuns: 300 }
        )
      )
    }))

  it.effect('a last transaction with status "c" (voted, never finished) is left out, with a warning naming it', () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-c-")
      const whole = new Uint8Array(NodeFs.readFileSync(mainFs))
      const { starts } = transactionBounds(whole)
      const last = starts[starts.length - 1]!
      whole[last + 16] = "c".charCodeAt(0)
      const { txns, warning } = yield* readAll(writeFile(dir, "Data.fs", whole))
      assert.strictEqual(txns.length, 11)
      assert.strictEqual(warning?.offset, last)
      assert.strictEqual(hex16(warning!.tid!), "040d69f333e472bb")
      assert.match(FileStorage.describeWarning(warning!), /status "c"/)
      const scan = yield* FileStorage.scan(NodePath.join(dir, "Data.fs"))
      assert.strictEqual(scan.transactions, 11)
      assert.strictEqual(scan.warning?.offset, last)
    }))

  it.effect('status "c" on a transaction that is not the last is corruption', () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-c-mid-")
      const whole = new Uint8Array(NodeFs.readFileSync(mainFs))
      const { starts } = transactionBounds(whole)
      whole[starts[5]! + 16] = "c".charCodeAt(0)
      const e = yield* failureOf(writeFile(dir, "Data.fs", whole))
      assert.strictEqual(e?._tag, "FileStorageCorrupt")
      assert.strictEqual((e as { offset: number }).offset, starts[5])
    }))

  it.effect("an empty file is an empty storage; a missing file or another format is FileStorageUnreadable", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-empty-")
      assert.deepStrictEqual((yield* readAll(writeFile(dir, "empty.fs", new Uint8Array(0)))).txns, [])
      const missing = yield* failureOf(NodePath.join(dir, "nope.fs"))
      assert.strictEqual(missing?.message.split("\n")[0], `FileStorage ${NodePath.join(dir, "nope.fs")}: no such file`)
      // and what to do about it
      assert.include(missing?.message, "help: check path in the <filestorage> section")
      const other = yield* failureOf(writeFile(dir, "other.fs", new TextEncoder().encode("SQLite format 3\0")))
      assert.strictEqual(other?._tag, "FileStorageUnreadable")
      assert.match(other!.message, /not a FileStorage: it starts with "SQLi"/)
      const short = yield* failureOf(writeFile(dir, "short.fs", bytes(0x46, 0x53)))
      assert.strictEqual(short?._tag, "FileStorageUnreadable")
    }))
})

describe("FileStorage reader: damaged files", () => {
  it.effect("a byte changed in any transaction or record header: a typed error inside that transaction, or data read; never a crash", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-flip-")
      const whole = NodeFs.readFileSync(mainFs)
      const { starts, ends } = transactionBounds(whole)
      const { txns: all } = yield* readAll(mainFs)
      let corrupt = 0, read = 0, tail = 0
      for (let t = 0; t < starts.length; t++) {
        const headers = [starts[t]!, ...recordBounds(whole, starts[t]!).slice(0, 2)]
        for (const h of headers) {
          const length = h === starts[t] ? 23 : 42
          for (let i = 0; i < length; i++) {
            for (const mask of [0x01, 0xff]) {
              const damaged = new Uint8Array(whole)
              damaged[h + i] = damaged[h + i]! ^ mask
              const path = writeFile(dir, "Data.fs", damaged)
              const result = yield* Effect.result(readAll(path))
              if (Result.isFailure(result)) {
                const e = result.failure
                assert.include(["FileStorageCorrupt", "BackpointerMissing"], e._tag, e.message)
                // the error names a place in the damaged transaction: the header or record, or for a later
                // undo record, the damaged record its backpointer leads to
                const inside = (offset: number) => offset >= starts[t]! && offset < ends[t]!
                const named = e._tag === "BackpointerMissing" ? [e.offset, e.backpointer] : e._tag === "FileStorageCorrupt" ? [e.offset] : []
                assert.isTrue(named.some(inside), `${e.message} (changed byte ${h + i})`)
                corrupt++
              } else if (result.success.warning !== undefined) {
                // only the last transaction may turn into an unfinished commit (its status changed to "c")
                assert.strictEqual(t, starts.length - 1, `byte ${h + i}`)
                assert.strictEqual(result.success.warning.offset, starts[t])
                tail++
              } else {
                // a change the format cannot see (an oid, a tid that stays in order, a length's unused bit...)
                assert.strictEqual(result.success.txns.length, all.length - (damaged[starts[t]! + 16] === 0x75 ? 1 : 0))
                read++
              }
            }
          }
        }
      }
      assert.isAbove(corrupt, read)
      assert.isAtMost(tail, 1)
    }))

  it.effect("specific damage is named with its offset and tid", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-damage-")
      const whole = NodeFs.readFileSync(mainFs)
      const { starts } = transactionBounds(whole)
      const t3 = starts[3]!
      const tid3 = new DataView(whole.buffer, whole.byteOffset).getBigUint64(t3)
      const damage = (at: number, value: number) => {
        const d = new Uint8Array(whole)
        d[at] = value
        return writeFile(dir, "Data.fs", d)
      }
      const cases: Array<[string, number, number, number, RegExp]> = [
        ["transaction length", t3 + 9, 0x7f, t3, /runs past the end of the file, and intact transactions follow/],
        ["status", t3 + 16, 0x78, t3, /invalid transaction status "x"/],
        ["tid order", t3, 0x00, t3, /is not greater than the previous/],
        ["redundant length", starts[4]! - 1, 0x00, t3, /redundant transaction length/],
        ["version length", recordBounds(whole, t3)[0]! + 33, 0x01, recordBounds(whole, t3)[0]!, /version length 1/],
        ["tloc", recordBounds(whole, t3)[0]! + 31, 0x01, recordBounds(whole, t3)[0]!, /points to a transaction at byte/]
      ]
      for (const [what, at, value, offset, problem] of cases) {
        const e = yield* failureOf(damage(at, value))
        assert.strictEqual(e?._tag, "FileStorageCorrupt", what)
        assert.strictEqual((e as { offset: number }).offset, offset, what)
        assert.match(e!.message, problem, what)
        if (what !== "tid order") assert.include(e!.message, `(transaction ${hex16(tid3)})`, what)
        assert.include(e!.message, NodePath.join(dir, "Data.fs"), what)
      }
    }))

  it.effect("the last transaction complete but its header damaged is corruption, not an unfinished commit", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-last-")
      const whole = new Uint8Array(NodeFs.readFileSync(mainFs))
      const { starts } = transactionBounds(whole)
      const last = starts[starts.length - 1]!
      whole[last + 16] = 0x78
      const e = yield* failureOf(writeFile(dir, "Data.fs", whole))
      assert.strictEqual(e?._tag, "FileStorageCorrupt")
      assert.match(e!.message, /the transaction is complete/)
    }))
})

describe("FileStorage reader: built files", () => {
  const pickle = (s: string) => new TextEncoder().encode(s)

  it.effect("undo chains resolve to the bytes at their end; backpointer tid is the first link, as ZODB reports it", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-chain-")
      const built = buildDataFs([
        { tid: 10n, records: [{ oid: 1n, data: pickle("v1") }, { oid: 2n, data: pickle("created") }] },
        { tid: 20n, records: [{ oid: 1n, data: pickle("v2") }] },
        { tid: 30n, records: [{ oid: 1n, backTo: 10n }, { oid: 2n, noData: true }] }, // undo of 20; undo of 2's creation
        { tid: 40n, records: [{ oid: 1n, backTo: 30n }, { oid: 2n, backTo: 30n }] } // undo through an undo; to a no-data record
      ])
      const { txns } = yield* readAll(writeFile(dir, "Data.fs", built.bytes))
      const rows = txns.flatMap((t) => t.records).map((r) => ({
        tid: r.tid,
        oid: r.oid,
        data: r.data === null ? null : new TextDecoder().decode(r.data),
        backpointerTid: r.backpointerTid,
        dataTid: r.dataTid
      }))
      assert.deepStrictEqual(rows, [
        { tid: 10n, oid: 1n, data: "v1", backpointerTid: null, dataTid: 10n },
        { tid: 10n, oid: 2n, data: "created", backpointerTid: null, dataTid: 10n },
        { tid: 20n, oid: 1n, data: "v2", backpointerTid: null, dataTid: 20n },
        { tid: 30n, oid: 1n, data: "v1", backpointerTid: 10n, dataTid: 10n },
        { tid: 30n, oid: 2n, data: null, backpointerTid: null, dataTid: null },
        { tid: 40n, oid: 1n, data: "v1", backpointerTid: 30n, dataTid: 10n },
        { tid: 40n, oid: 2n, data: null, backpointerTid: 30n, dataTid: null }
      ])
      assert.strictEqual(rows[3]!.data, "v1")
    }))

  it.effect("a backpointer to nowhere, forward, or to another object's record: BackpointerMissing naming tid, oid and offset", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-back-")
      const base = [
        { tid: 10n, records: [{ oid: 1n, data: pickle("one") }, { oid: 2n, data: pickle("two") }] }
      ]
      const two = buildDataFs(base).recordOffsets.get("10:2")!
      const cases: Array<[number, RegExp]> = [
        [two, /the record there belongs to oid 0000000000000002/],
        [two + 3, /belongs to oid|no valid record/],
        [1, /there is no record there/],
        [1_000_000, /not before the record/]
      ]
      for (const [back, problem] of cases) {
        const built = buildDataFs([...base, { tid: 20n, records: [{ oid: 1n, rawBack: back }] }])
        const e = yield* failureOf(writeFile(dir, "Data.fs", built.bytes))
        assert.strictEqual(e?._tag, "BackpointerMissing", String(back))
        const m = e as unknown as { tid: bigint; oid: bigint; offset: number; backpointer: number }
        assert.deepStrictEqual([m.tid, m.oid, m.offset], [20n, 1n, built.recordOffsets.get("20:1")!])
        assert.match(e!.message, problem)
        assert.include(e!.message, "oid 0000000000000001 in transaction 0000000000000014")
      }
    }))

  it.effect('FS21 (Python 2 ZODB) reads the same; a "u" transaction is skipped, as ZODB\'s index skips it', () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-21-")
      const built = buildDataFs([
        { tid: 10n, user: "/ me", description: "first", records: [{ oid: 0n, data: pickle("root") }] },
        { tid: 20n, status: "u", records: [{ oid: 0n, data: pickle("undone") }] },
        { tid: 30n, status: "p", records: [{ oid: 0n, data: pickle("root2") }] }
      ], "FS21")
      const path = writeFile(dir, "Data.fs", built.bytes)
      const { txns } = yield* readAll(path)
      assert.deepStrictEqual(txns.map((t) => [t.tid, t.status, t.offset]), [[10n, " ", 4], [30n, "p", built.txnOffsets[2]!]])
      assert.strictEqual(utf8(txns[0]!.user), "/ me")
      const scan = yield* FileStorage.scan(path)
      assert.deepInclude(scan, { magic: "FS21", transactions: 2, skippedUndone: 1, records: 2 })
    }))

  it.effect("records bigger than the read window come out whole", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-big-")
      const big = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff)
      const built = buildDataFs([
        { tid: 10n, records: [{ oid: 1n, data: big }, { oid: 2n, data: pickle("small") }] },
        { tid: 20n, records: [{ oid: 1n, backTo: 10n }] }
      ])
      const { txns } = yield* readAll(writeFile(dir, "Data.fs", built.bytes), { windowBytes: 64 << 10 })
      assert.isTrue(Buffer.from(txns[0]!.records[0]!.data!).equals(Buffer.from(big)))
      assert.isTrue(Buffer.from(txns[1]!.records[0]!.data!).equals(Buffer.from(big)))
      assert.strictEqual(new TextDecoder().decode(txns[0]!.records[1]!.data!), "small")
    }))
})

describe("FileStorage reader: memory", () => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  const used = () => {
    gc()
    const m = process.memoryUsage()
    return m.heapUsed + m.arrayBuffers
  }
  /** The highest memory in use (after a full GC) while streaming `path`, above what was in use before. */
  const peakGrowth = (path: string, every: number) =>
    Effect.gen(function*() {
      const before = used()
      let peak = 0, n = 0
      yield* Stream.runForEach(FileStorage.transactions(path), () =>
        Effect.sync(() => {
          if (++n % every === 0) peak = Math.max(peak, used() - before)
        }))
      return { peak, n }
    })

  it.effect("bench-scale (7.6 MB) streams in flat memory", () =>
    Effect.gen(function*() {
      const { peak, n } = yield* peakGrowth(benchFs, 25)
      assert.strictEqual(n, 502)
      assert.isBelow(peak, 3 << 20, `peak growth ${peak} bytes`)
    }))

  it.effect("a 48 MB file streams in a few MB", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("fs-mem-")
      const chunk = new Uint8Array(48 << 10).map((_, i) => i & 0xff)
      const built = buildDataFs(Array.from({ length: 256 }, (_, t) => ({
        tid: 100n + BigInt(t),
        records: Array.from({ length: 4 }, (_, r) => ({ oid: BigInt(r), data: chunk }))
      })))
      const path = writeFile(dir, "Data.fs", built.bytes)
      const { peak, n } = yield* peakGrowth(path, 16)
      assert.strictEqual(n, 256)
      // the read windows (1 MiB + 64 KiB), one transaction (192 KiB), and the test runner's own noise
      assert.isBelow(peak, 8 << 20, `peak growth ${peak} bytes`)
    }))
})
