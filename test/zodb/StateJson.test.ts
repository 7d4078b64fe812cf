// The state JSON writer (src/zodb/codec/StateJson.ts) on records made here, for the markers and loss
// cases the fixtures do not hold: both modes, and the Loss values each gives. Float text forms too.
import { assert, describe, it } from "@effect/vitest"
import { positionalFloat, pythonFloatRepr, ryuFormat } from "../../src/zodb/codec/FloatFormat.ts"
import type { LossReason } from "../../src/zodb/codec/Loss.ts"
import { decodeRecord, hexOid } from "../../src/zodb/codec/RecordCodec.ts"
import { jsonbRefusal } from "../support/Jsonb.ts"
import { Pickler, type Py } from "../support/Pickler.ts"

const str = (value: string): Py => ({ kind: "str", value })
const int = (value: number | bigint): Py => ({ kind: "int", value: BigInt(value) })
const tuple = (...items: Array<Py>): Py => ({ kind: "tuple", items })
const dict = (...items: Array<readonly [Py, Py]>): Py => ({ kind: "dict", items })
const global = (module: string, name: string): Py => ({ kind: "global", module, name })
const bytes = (...b: Array<number>): Py => ({ kind: "bytes", value: Uint8Array.from(b) })
const none: Py = { kind: "none" }
const reduce = (callable: Py, args: Py, state?: Py): Py =>
  state === undefined ? { kind: "reduce", callable, args } : { kind: "reduce", callable, args, state }
const oid = (n: number) => bytes(0, 0, 0, 0, 0, 0, 0, n)

/** A record of class `cls` (a GLOBAL unless given as a value) with state `state`. */
const rec = (state: Py, cls: Py = global("mods", "Item"), protocol = 3) =>
  new Pickler({ protocol }).dump(cls).dump(state).bytes()

const both = (bytes: Uint8Array) => {
  const codec = decodeRecord(bytes, { mode: "codec" })
  const faithful = decodeRecord(bytes)
  for (const d of [codec, faithful]) assert.strictEqual(jsonbRefusal(d.stateJson), undefined, d.stateJson)
  return { codec, faithful }
}
const reasons = (d: { readonly losses: ReadonlyArray<{ readonly reason: LossReason; readonly repaired: boolean }> }) =>
  d.losses.map((l) => `${l.reason}${l.repaired ? "" : "!"}`)

describe("markers", () => {
  it("datetime types: date, time with microseconds, timedelta, offset tz, Decimal, UUID", () => {
    const dt = (b: Array<number>, tz?: Py) =>
      reduce(global("datetime", "datetime"), tz === undefined ? tuple(bytes(...b)) : tuple(bytes(...b), tz))
    const td = (d: number, s: number, us: number) => reduce(global("datetime", "timedelta"), tuple(int(d), int(s), int(us)))
    const tz = (secs: number) => reduce(global("datetime", "timezone"), tuple(td(secs < 0 ? -1 : 0, secs < 0 ? 86400 + secs : secs, 0)))
    const state = dict(
      [str("d"), reduce(global("datetime", "date"), tuple(bytes(7, 233, 6, 15)))],
      [str("t"), reduce(global("datetime", "time"), tuple(bytes(1, 2, 3, 0, 0, 7)))],
      [str("td"), td(-1, 86399, 5)],
      [str("dt"), dt([7, 233, 1, 1, 0, 0, 0, 0, 0, 0], tz(-12600))],
      [str("dec"), reduce(global("decimal", "Decimal"), tuple(str("1E+3")))],
      [str("u"), reduce(global("uuid", "UUID"), tuple(), dict([str("int"), int(2n ** 127n + 1n)]))]
    )
    const { codec, faithful } = both(rec(state))
    assert.strictEqual(codec.stateJson,
      '{"d":{"@date":"2025-06-15"},"t":{"@time":"01:02:03.000007"},"td":{"@td":[-1,86399,5]},' +
        '"dt":{"@dt":"2025-01-01T00:00:00-03:30"},"dec":{"@dec":"1E+3"},"u":{"@uuid":"80000000-0000-0000-0000-000000000001"}}')
    assert.strictEqual(faithful.stateJson, codec.stateJson)
    assert.deepStrictEqual(faithful.losses, [])
  })

  it("BTrees: inline bucket, several buckets with @children/@first, bucket @next, sets, empty", () => {
    const bucketRef = { kind: "pref", pid: tuple(oid(5), global("BTrees.OOBTree", "OOBucket")) } as Py
    const cases: ReadonlyArray<readonly [string, Py, string]> = [
      ["OOBTree", tuple(tuple(tuple(tuple(str("a"), int(1), str("b"), int(2))))), '{"@kv":[["a",1],["b",2]]}'],
      ["OOBTree", tuple(tuple(bucketRef, str("k"), bucketRef), bucketRef),
        '{"@children":[{"@ref":["0000000000000005","BTrees.OOBTree.OOBucket"]},"k",' +
        '{"@ref":["0000000000000005","BTrees.OOBTree.OOBucket"]}],' +
        '"@first":{"@ref":["0000000000000005","BTrees.OOBTree.OOBucket"]}}'],
      ["OOBucket", tuple(tuple(str("a"), int(1)), bucketRef),
        '{"@kv":[["a",1]],"@next":{"@ref":["0000000000000005","BTrees.OOBTree.OOBucket"]}}'],
      ["OOTreeSet", tuple(tuple(tuple(tuple(str("p"))))), '{"@ks":["p"]}'],
      ["OOSet", tuple(tuple(int(1), int(2))), '{"@ks":[1,2]}'],
      ["OOBTree", none, "null"]
    ]
    for (const [name, state, json] of cases) {
      const { codec } = both(rec(state, global("BTrees.OOBTree", name)))
      assert.strictEqual(codec.stateJson, json, name)
    }
    const length = both(rec(int(42), global("BTrees.Length", "Length"))).codec
    assert.strictEqual(length.stateJson, "42")
  })

  it("refs: (oid, None) and (oid, class) compact, others generic; refs as signed i64", () => {
    const high = bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe)
    const state = tuple(
      { kind: "pref", pid: tuple(oid(1), none) },
      { kind: "pref", pid: tuple(high, global("", "Top")) },
      { kind: "pref", pid: { kind: "list", items: [str("m"), tuple(str("db"), oid(3), none)] } }
    )
    const { codec } = both(rec(state))
    assert.strictEqual(codec.stateJson,
      '{"@t":[{"@ref":"0000000000000001"},{"@ref":["fffffffffffffffe","Top"]},' +
        '{"@ref":["m",{"@t":["db",{"@b":"AAAAAAAAAAM="},null]}]}]}')
    assert.deepStrictEqual(codec.codecRefs, [1n, -2n])
    assert.deepStrictEqual(codec.refs, [1n, -2n]) // a multi-database reference is not this database's
    assert.strictEqual(hexOid(-2n), "fffffffffffffffe")
  })
})

describe("losses and faithful forms beyond the fixtures", () => {
  it("dicts whose keys the loader reads as markers go as @d pairs", () => {
    const { codec, faithful } = both(rec(dict([str("x"), dict([str("@t"), { kind: "list", items: [int(1)] }])])))
    assert.strictEqual(codec.stateJson, '{"x":{"@t":[1]}}')
    assert.strictEqual(faithful.stateJson, '{"x":{"@d":[["@t",[1]]]}}')
    assert.deepStrictEqual(reasons(codec), ["marker-key!"])
    assert.deepStrictEqual(reasons(faithful), ["marker-key"])
    // five keys: the loader does not look for markers
    const five = dict(...["@t", "b", "c", "d", "e"].map((k) => [str(k), none] as const))
    assert.deepStrictEqual(both(rec(five)).codec.losses, [])
  })

  it("a str with a lone surrogate: str(bytes, 'utf-8', 'surrogatepass') (the codec refuses it)", () => {
    const { codec, faithful } = both(rec(dict([str("s"), str("a\ud800")])))
    const form = '{"s":{"@reduce":{"callable":{"@cls":["builtins","str"]},"args":{"@t":[{"@b":"Ye2ggA=="},"utf-8",' +
      '"surrogatepass"]}}}}'
    assert.strictEqual(faithful.stateJson, form)
    assert.strictEqual(codec.stateJson, form)
    assert.deepStrictEqual(reasons(codec), ["codec-rejects"])
  })

  it("\\0 in a str value is @ns (reversible), in a key @ns: (not reversed by the loader)", () => {
    const { codec, faithful } = both(rec(dict([str("k\0"), str("v\0")])))
    assert.strictEqual(codec.stateJson, '{"@ns:awA=":{"@ns":"dgA="}}')
    assert.strictEqual(faithful.stateJson, '{"@d":[[{"@ns":"awA="},{"@ns":"dgA="}]]}')
  })

  it("a tz offset with seconds: the codec writes hh:mm, faithful the generic reduce", () => {
    const td = reduce(global("datetime", "timedelta"), tuple(int(0), int(3601), int(0)))
    const tz = reduce(global("datetime", "timezone"), tuple(td))
    const { codec, faithful } = both(rec(reduce(global("datetime", "time"), tuple(bytes(1, 0, 0, 0, 0, 0), tz))))
    assert.strictEqual(codec.stateJson, '{"@time":"01:00:00+01:00"}')
    assert.match(faithful.stateJson, /^\{"@reduce":\{"callable":\{"@cls":\["datetime","time"\]\}/)
    assert.deepStrictEqual(reasons(faithful), ["tz-offset-seconds"])
  })

  it("deque items become its argument; items of other objects stay lost", () => {
    const deque = new Pickler({ protocol: 3 }).dump(global("mods", "Item")).bytes()
    // collections.deque((), 5) then APPENDS 1, 2
    const state = Uint8Array.from([
      0x80, 3, ...Buffer.from("ccollections\ndeque\n", "latin1"), 0x29, 0x4b, 5, 0x86, 0x52, 0x28, 0x4b, 1, 0x4b, 2, 0x65,
      0x2e
    ])
    const { codec, faithful } = both(new Uint8Array([...deque, ...state]))
    assert.strictEqual(codec.stateJson,
      '{"@reduce":{"callable":{"@cls":["collections","deque"]},"args":{"@t":[{"@t":[]},5]},"appends":[1,2]}}')
    assert.strictEqual(faithful.stateJson,
      '{"@reduce":{"callable":{"@cls":["collections","deque"]},"args":{"@t":[[1,2],5]}}}')
    assert.deepStrictEqual(reasons(faithful), ["object-items"])
  })

  it("NEWOBJ: without args and state it becomes {@cls, @s: null}; with args and a state they are lost", () => {
    const newobj = (args: Array<number>, state: boolean) =>
      Uint8Array.from([
        0x80, 3, ...Buffer.from("cmods\nItem\n.", "latin1"), 0x80, 3, ...Buffer.from("cmods\nP\n", "latin1"),
        ...(args.length === 0 ? [0x29] : [...args.flatMap((a) => [0x4b, a]), 0x84 + args.length]),
        0x81, ...(state ? [0x7d, 0x62] : []), 0x2e
      ])
    const plain = both(newobj([], false))
    assert.strictEqual(plain.codec.stateJson, '{"@reduce":{"callable":{"@cls":["mods","P"]},"args":{"@t":[]}}}')
    assert.strictEqual(plain.faithful.stateJson, '{"@cls":["mods","P"],"@s":null}')
    const withArgs = both(newobj([7], true))
    assert.strictEqual(withArgs.codec.stateJson, '{"@cls":["mods","P"],"@s":{"@args":{"@t":[7]},"@state":{}}}')
    assert.deepStrictEqual(reasons(withArgs.faithful), ["object-args!"])
  })

  it("class metadata: (klass, args) keeps \"\" with args; ((module, name), None) of Python 2 strings", () => {
    const withArgs = both(rec(none, tuple(global("mods", "N"), tuple(int(1)))))
    assert.deepStrictEqual([withArgs.faithful.classMod, withArgs.faithful.className], ["", ""])
    assert.deepStrictEqual(reasons(withArgs.faithful), ["class-lost!"])
    const py2 = both(rec(none, tuple(tuple(bytes(...Buffer.from("mods")), bytes(...Buffer.from("Old"))), none), 2))
    assert.deepStrictEqual([py2.codec.classMod, py2.codec.className], ["", ""])
    assert.deepStrictEqual([py2.faithful.classMod, py2.faithful.className], ["mods", "Old"])
  })

  it("a weak reference to another database keeps the codec's form (no form the loader reads)", () => {
    const weak = { kind: "pref", pid: { kind: "list", items: [str("w"), tuple(oid(2), str("other"))] } } as Py
    const { faithful } = both(rec(tuple(weak)))
    assert.strictEqual(faithful.stateJson, '{"@t":[{"@ref":["w",{"@t":[{"@b":"AAAAAAAAAAI="},"other"]}]}]}')
    assert.deepStrictEqual(reasons(faithful), ["weak-ref!"])
    assert.deepStrictEqual(faithful.refs, [])
  })

  it("a Python 2 pickle: str as bytes, like the codec, flagged", () => {
    const { codec, faithful } = both(rec(dict([bytes(...Buffer.from("title")), bytes(...Buffer.from("Hi"))]), undefined, 1))
    assert.strictEqual(codec.stateJson, '{"@d":[[{"@b":"dGl0bGU="},{"@b":"SGk="}]]}')
    assert.strictEqual(faithful.stateJson, codec.stateJson)
    assert.deepStrictEqual(reasons(codec), ["py2-str!"])
  })
})

describe("float text", () => {
  const values = [0, -0, 1, -1.5, 0.1, 1e16, 1e15, 123456789012345678, 1e-4, 1e-5, 0.00012345, 5e-324,
    1.7976931348623157e308, 2.2250738585072014e-308, 9999999999999998, 1e22, 1.5e300, Math.PI, 100, 1234567, 0.3]

  it("Python repr, as CPython 3.11 prints these values", () => {
    assert.deepStrictEqual(values.map(pythonFloatRepr), ["0.0", "-0.0", "1.0", "-1.5", "0.1", "1e+16",
      "1000000000000000.0", "1.2345678901234568e+17", "0.0001", "1e-05", "0.00012345", "5e-324",
      "1.7976931348623157e+308", "2.2250738585072014e-308", "9999999999999998.0", "1e+22", "1.5e+300",
      "3.141592653589793", "100.0", "1234567.0", "0.3"])
  })

  it("ryu's format_finite layout", () => {
    assert.deepStrictEqual(values.map(ryuFormat), ["0.0", "-0.0", "1.0", "-1.5", "0.1", "1e16", "1000000000000000.0",
      "1.2345678901234568e17", "0.0001", "0.00001", "0.00012345", "5e-324", "1.7976931348623157e308",
      "2.2250738585072014e-308", "9999999999999998.0", "1e22", "1.5e300", "3.141592653589793", "100.0", "1234567.0",
      "0.3"])
    assert.strictEqual(ryuFormat(1e-6), "1e-6")
    assert.strictEqual(positionalFloat(-1.2345678901234568e17), "-123456789012345680.0")
    for (const x of values) {
      assert.strictEqual(Number(ryuFormat(x)), x)
      assert.strictEqual(Number(pythonFloatRepr(x)), x)
    }
  })
})
