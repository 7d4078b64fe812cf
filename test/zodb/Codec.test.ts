// The record codec (src/zodb/codec/RecordCodec.ts) against the golden fixtures: every record that
// zodb-json-codec 1.6.1 decoded for shared/fixtures/zodb must come out with the same class_mod,
// class_name, state_size and refs, and the same state: byte for byte, and so also under jsonb equality
// with every float kept a float. Then the losses of codec-losses.jsonl, the faithful forms, and errors.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { resolve } from "node:path"
import { ClassPickleError, PickleError, StateError } from "../../src/zodb/codec/CodecErrors.ts"
import type { LossReason } from "../../src/zodb/codec/Loss.ts"
import { decodeRecord, decodeRecordEffect, type DecodedRecord, hexOid } from "../../src/zodb/codec/RecordCodec.ts"
import { readFileStorage } from "../support/FileStorage.ts"
import { compareJsonb, jsonbRefusal, parseJson } from "../support/Jsonb.ts"
import {
  benchExpected,
  type ExpectedRecord,
  expectedLosses,
  expectedRecords,
  zodbFixtures
} from "../support/ZodbFixtures.ts"


/** Compares one record with the codec's output; returns what differs ("" when nothing). */
const differences = (e: ExpectedRecord, d: DecodedRecord): string => {
  const out: Array<string> = []
  if (d.classMod !== e.classMod || d.className !== e.className) {
    out.push(`class ${d.classMod}.${d.className} vs ${e.classMod}.${e.className}`)
  }
  if (d.stateSize !== e.stateSize) out.push(`state_size ${d.stateSize} vs ${e.stateSize}`)
  const refs = d.codecRefs.map(hexOid)
  if (refs.join() !== e.refs.join()) out.push(`refs ${refs.join()} vs ${e.refs.join()}`)
  const cmp = compareJsonb(e.stateText!, d.stateJson)
  if (!cmp.equal) out.push(`state differs under jsonb: ${cmp.difference}`)
  if (cmp.lostFloats.length > 0) out.push(`floats written as ints at ${cmp.lostFloats.join(",")}`)
  const refusal = jsonbRefusal(d.stateJson)
  if (refusal !== undefined) out.push(`PostgreSQL would refuse the state: ${refusal}`)
  return out.length === 0 ? "" : `${e.tid} ${e.zoid}: ${out.join("; ")}`
}

const checkAll = (records: ReadonlyArray<{ readonly e: ExpectedRecord; readonly pickle: Uint8Array }>) => {
  const failures: Array<string> = []
  let identical = 0
  for (const { e, pickle } of records) {
    const d = decodeRecord(pickle, { mode: "codec" })
    const diff = differences(e, d)
    if (diff !== "") failures.push(diff)
    if (d.stateJson === e.stateText) identical++
  }
  return { failures, identical }
}

const withPickles = (name: string) =>
  expectedRecords(name).filter((e) => e.pickle !== null).map((e) => ({ e, pickle: e.pickle! }))

describe("record codec against zodb-json-codec's output", () => {
  it("filestorage.jsonl: all 315 records with data (2 of them backpointers) match, byte for byte", () => {
    const records = withPickles("filestorage")
    assert.strictEqual(records.length, 315)
    assert.strictEqual(records.filter((r) => r.e.kind === "backpointer").length, 2)
    const { failures, identical } = checkAll(records)
    assert.deepStrictEqual(failures, [])
    assert.strictEqual(identical, 315)
  })

  it("history.jsonl: all 360 records match, byte for byte", () => {
    const records = withPickles("history")
    assert.strictEqual(records.length, 360)
    const { failures, identical } = checkAll(records)
    assert.deepStrictEqual(failures, [])
    assert.strictEqual(identical, 360)
  })

  it("bench-scale: the 22,350 records of Data.fs match expected-codec.jsonl.gz", () => {
    const expected = new Map(benchExpected().map((e) => [`${e.tid} ${e.zoid}`, e]))
    const records: Array<{ e: ExpectedRecord; pickle: Uint8Array }> = []
    for (const t of readFileStorage(resolve(zodbFixtures(), "bench-scale", "Data.fs"))) {
      for (const r of t.records) {
        const e = expected.get(`${t.tid} ${r.oid}`)
        assert.isDefined(e, `${t.tid} ${r.oid} not in expected-codec.jsonl.gz`)
        if (r.data !== null) records.push({ e: e!, pickle: r.data })
      }
    }
    assert.strictEqual(records.length, 22_350)
    assert.strictEqual(expected.size, 22_350)
    const { failures, identical } = checkAll(records)
    assert.deepStrictEqual(failures.slice(0, 5), [])
    assert.strictEqual(identical, 22_350)
  })

  it("the FileStorage walker sees the records of filestorage.jsonl, in order, with the same bytes", () => {
    const expected = expectedRecords("filestorage")
    const walked = readFileStorage(resolve(zodbFixtures(), "filestorage", "Data.fs")).flatMap((t) => t.records)
    assert.deepStrictEqual(walked.map((r) => `${r.tid} ${r.oid}`), expected.map((e) => `${e.tid} ${e.zoid}`))
    for (let i = 0; i < walked.length; i++) {
      const w = walked[i]!
      const e = expected[i]!
      assert.strictEqual(w.data === null ? null : Buffer.from(w.data).toString("base64"),
        e.pickle === null ? null : Buffer.from(e.pickle).toString("base64"))
      assert.strictEqual(w.backpointer, e.kind === "backpointer")
    }
  })

  it("a record without losses comes out the same in faithful mode, with refs = codecRefs", () => {
    let lossless = 0
    for (const { pickle } of [...withPickles("filestorage"), ...withPickles("history")]) {
      const codec = decodeRecord(pickle, { mode: "codec" })
      if (codec.losses.length > 0) continue
      lossless++
      const faithful = decodeRecord(pickle)
      assert.strictEqual(faithful.stateJson, codec.stateJson)
      assert.deepStrictEqual(faithful.refs, codec.codecRefs)
      assert.deepStrictEqual(faithful.losses, [])
    }
    assert.strictEqual(lossless, 315 + 360 - 11)
  })
})

/** The reason of a codec-losses.jsonl line, in Loss.ts's words. */
const reasonOf = (text: string): LossReason => {
  const rules: ReadonlyArray<readonly [RegExp, LossReason]> = [
    [/^bare-oid persistent reference/, "bare-oid-ref"],
    [/persistent weak reference/, "weak-ref"],
    [/^class pickle is \(klass, newargs\)/, "class-lost"],
    [/pytz\.utc/, "pytz-utc"],
    [/NaN and .*inf/, "float-nan-inf"],
    [/^shared mutable sub-object/, "shared-object"],
    [/^float -0\.0/, "float-negative-zero"],
    [/^float .*: jsonb stores the integer/, "float-integral"]
  ]
  const hit = rules.find(([re]) => re.test(text))
  if (hit === undefined) throw new Error(`unknown loss reason: ${text}`)
  return hit[1]
}

describe("codec losses", () => {
  it("flags exactly the records of codec-losses.jsonl (filestorage), with at least its reasons", () => {
    const expected = new Map<string, Set<LossReason>>()
    for (const l of expectedLosses().filter((l) => l.source === "filestorage")) {
      const k = `${l.tid} ${l.zoid}`
      expected.set(k, (expected.get(k) ?? new Set()).add(reasonOf(l.reason)))
    }
    assert.strictEqual(expected.size, 11)
    const found = new Map<string, Set<LossReason>>()
    for (const { e, pickle } of withPickles("filestorage")) {
      const d = decodeRecord(pickle, { mode: "codec" })
      if (d.losses.length > 0) found.set(`${e.tid} ${e.zoid}`, new Set(d.losses.map((l) => l.reason)))
    }
    assert.deepStrictEqual([...found.keys()].sort(), [...expected.keys()].sort())
    for (const [k, reasons] of expected) {
      for (const r of reasons) assert.isTrue(found.get(k)!.has(r), `${k}: ${r} not found`)
    }
    // what we flag beyond the file, on records it flags already (docs/zodb-codec.md explains both)
    const extra = [...found].flatMap(([k, rs]) => [...rs].filter((r) => !expected.get(k)!.has(r)).map((r) => `${k} ${r}`))
    assert.deepStrictEqual(extra.sort(), [
      "040d69f33264b566 0000000000000001 nul-key",
      "040d69f33264b566 0000000000000002 object-items",
      "040d69f333d59433 0000000000000001 nul-key"
    ])
  })

  it("history has no losses", () => {
    for (const { pickle } of withPickles("history")) assert.deepStrictEqual(decodeRecord(pickle, { mode: "codec" }).losses, [])
  })
})

const record = (zoid: string, tid = "040d69f33264b566"): Uint8Array =>
  expectedRecords("filestorage").find((e) => e.zoid === zoid && e.tid === tid)!.pickle!

/** The value at `path` (keys) in parsed JSON text. */
const at = (text: string, ...path: Array<string>): unknown => {
  let v: unknown = parseJson(text)
  for (const k of path) v = (v as ReadonlyMap<string, unknown>).get(k)
  return v
}
const rawAt = (text: string, key: string): string => {
  const i = text.indexOf(`"${key}":`) + key.length + 3
  let depth = 0
  for (let j = i; j < text.length; j++) {
    const c = text[j]
    if (c === "{" || c === "[") depth++
    if (c === "}" || c === "]") {
      if (depth === 0) return text.slice(i, j)
      depth--
    }
    if (c === "," && depth === 0) return text.slice(i, j)
  }
  return text.slice(i)
}

describe("faithful forms", () => {
  it("floats: ≥1e16 positional with .0 (jsonb-equal to the codec's), -0.0, NaN and inf as float(text)", () => {
    const codec = decodeRecord(record("0000000000000001"), { mode: "codec" })
    const faithful = decodeRecord(record("0000000000000001"))
    assert.strictEqual(rawAt(faithful.stateJson, "f16"), "10000000000000000.0")
    assert.strictEqual(rawAt(faithful.stateJson, "f300"), "15" + "0".repeat(299) + ".0")
    assert.strictEqual(rawAt(codec.stateJson, "f16"), "1e16")
    const float = (text: string) => `{"@reduce":{"callable":{"@cls":["builtins","float"]},"args":{"@t":["${text}"]}}}`
    assert.strictEqual(rawAt(faithful.stateJson, "fneg0"), float("-0.0"))
    assert.strictEqual(rawAt(faithful.stateJson, "nan"), float("nan"))
    assert.strictEqual(rawAt(faithful.stateJson, "inf"), float("inf"))
    assert.strictEqual(rawAt(faithful.stateJson, "ninf"), float("-inf"))
    assert.strictEqual(rawAt(faithful.stateJson, "nulkey"), '{"@d":[[{"@ns":"awA="},1]]}')
    // shared objects have no form the loader reverses: the codec's copies stay
    assert.strictEqual(rawAt(faithful.stateJson, "shared"), rawAt(codec.stateJson, "shared"))
    const repaired = Object.fromEntries(faithful.losses.map((l) => [l.reason, l.repaired]))
    assert.deepStrictEqual(repaired, {
      "float-nan-inf": true,
      "float-integral": true,
      "float-negative-zero": true,
      "shared-object": false,
      "nul-key": true
    })
  })

  it("(klass, ()) class pickle: the class is kept", () => {
    const codec = decodeRecord(record("0000000000000017"), { mode: "codec" })
    const faithful = decodeRecord(record("0000000000000017"))
    assert.deepStrictEqual([codec.classMod, codec.className], ["", ""])
    assert.deepStrictEqual([faithful.classMod, faithful.className], ["mods", "WithNewArgs"])
    assert.strictEqual(faithful.stateJson, codec.stateJson)
  })

  it("refs: bare oids are added in both modes, weak refs left out; a weak ref becomes ZODB's [oid] form", () => {
    for (const mode of ["codec", "faithful"] as const) {
      const d = decodeRecord(record("0000000000000018"), { mode })
      assert.deepStrictEqual(d.codecRefs.map(hexOid), ["0000000000000016", "0000000000000014", "0000000000000016"])
      assert.deepStrictEqual(d.refs.map(hexOid), ["0000000000000017", "0000000000000016", "0000000000000014",
        "0000000000000016"])
    }
    const faithful = decodeRecord(record("0000000000000018"))
    assert.strictEqual(rawAt(faithful.stateJson, "weak"), '{"@ref":[{"@b":"AAAAAAAAABY="}]}')
    assert.strictEqual(rawAt(faithful.stateJson, "to_na"), '{"@ref":{"@b":"AAAAAAAAABc="}}')
    const root = decodeRecord(record("0000000000000000"))
    assert.include(root.refs.map(hexOid), "0000000000000017")
    assert.notInclude(root.codecRefs.map(hexOid), "0000000000000017")
  })

  it("pytz.utc as the generic reduce; OrderedDict and defaultdict items as constructor args", () => {
    const faithful = decodeRecord(record("0000000000000002"))
    assert.strictEqual(rawAt(faithful.stateJson, "dtpytzutc"),
      '{"@reduce":{"callable":{"@cls":["datetime","datetime"]},"args":{"@t":[{"@b":"B+kBAQAAAAAAAA=="},' +
        '{"@reduce":{"callable":{"@cls":["pytz","_UTC"]},"args":{"@t":[]}}}]}}}')
    assert.strictEqual(rawAt(faithful.stateJson, "od"),
      '{"@reduce":{"callable":{"@cls":["collections","OrderedDict"]},"args":{"@t":[[{"@t":["b",1]},{"@t":["a",2]}]]}}}')
    assert.strictEqual(rawAt(faithful.stateJson, "dd"),
      '{"@reduce":{"callable":{"@cls":["collections","defaultdict"]},"args":{"@t":[{"@cls":["builtins","list"]},' +
        '[{"@t":["x",[1]]}]]}}}')
    assert.strictEqual(at(faithful.stateJson, "data", "dtutc", "@dt"), "2025-01-01T00:00:00+00:00")
  })
})

describe("record errors", () => {
  const pm = Buffer.from("gANjcGVyc2lzdGVudC5tYXBwaW5nClBlcnNpc3RlbnRNYXBwaW5nCnEALoADfXEBWAQAAABkYXRhcQJ9cQNzLg==", "base64")

  it.effect("a truncated record fails with a PickleError at the cut", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(decodeRecordEffect(new Uint8Array(pm.subarray(0, 50))))
      assert.instanceOf(e, PickleError)
      assert.strictEqual(e._tag, "PickleError")
      assert.isAtMost((e as PickleError).offset, 50)
      assert.match(e.message, /truncated/)
    }))

  it("an unknown opcode names its offset and byte", () => {
    const bad = new Uint8Array(pm)
    bad[45] = 0xff // the state pickle's first opcode after PROTO
    const e = (() => {
      try {
        decodeRecord(bad)
      } catch (e) {
        return e
      }
    })()
    assert.instanceOf(e, PickleError)
    assert.strictEqual((e as PickleError).offset, 45)
    assert.strictEqual((e as PickleError).opcode, 0xff)
    assert.strictEqual((e as PickleError).message, "pickle at byte 45 (opcode 0xff): unknown opcode")
  })

  it("a class pickle that is not a class is a ClassPickleError", () => {
    // K\x05. (the int 5) then an empty dict
    const e = (() => {
      try {
        decodeRecord(Uint8Array.from([0x80, 3, 0x4b, 5, 0x2e, 0x80, 3, 0x7d, 0x2e]))
      } catch (e) {
        return e
      }
    })()
    assert.instanceOf(e, ClassPickleError)
    assert.strictEqual((e as ClassPickleError).offset, 4)
    assert.strictEqual((e as ClassPickleError).found, "5")
  })

  it("a bucket state with an odd number of items has no JSON form: StateError", () => {
    const cls = Buffer.from("\x80\x03cBTrees.OOBTree\nOOBucket\n.", "latin1")
    // ((1, 2, 3),)
    const state = Uint8Array.from([0x80, 3, 0x4b, 1, 0x4b, 2, 0x4b, 3, 0x87, 0x85, 0x2e])
    const bytes = new Uint8Array([...cls, ...state])
    const e = (() => {
      try {
        decodeRecord(bytes)
      } catch (e) {
        return e
      }
    })()
    assert.instanceOf(e, StateError)
    assert.strictEqual((e as StateError).offset, cls.length)
    assert.match((e as StateError).message, /odd number of items/)
  })
})
