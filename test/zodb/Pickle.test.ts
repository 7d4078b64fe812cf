// The pickle decoder (src/zodb/codec/Pickle.ts): opcodes one by one where they have corners, a round
// trip through a test pickler for random values in every protocol, and robustness: random or cut bytes
// fail with PickleError and nothing else.
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { ClassPickleError, PickleError, StateError } from "../../src/zodb/codec/CodecErrors.ts"
import { extensionBytes } from "../../src/zodb/codec/Extension.ts"
import { decodePickle, PickleReader } from "../../src/zodb/codec/Pickle.ts"
import type { PickleValue } from "../../src/zodb/codec/PickleValue.ts"
import { decodeRecord } from "../../src/zodb/codec/RecordCodec.ts"
import { jsonbRefusal } from "../support/Jsonb.ts"
import { pickle, Pickler, type Py } from "../support/Pickler.ts"

const b = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "latin1"))
const decode = (s: string) => decodePickle(b(s))
const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

/** The decoded tree as a Py value (for comparing with what was pickled). */
const toPy = (v: PickleValue): Py => {
  switch (v.kind) {
    case "none":
      return { kind: "none" }
    case "bool":
      return { kind: "bool", value: v.value }
    case "int":
      return { kind: "int", value: BigInt(v.value) }
    case "float":
      return { kind: "float", value: v.value }
    case "str":
      return { kind: "str", value: v.value }
    case "bytes":
      return { kind: "bytes", value: Uint8Array.from(v.value) }
    case "list":
    case "tuple":
    case "set":
    case "frozenset":
      return { kind: v.kind, items: v.items.map(toPy) }
    case "dict": {
      const items: Array<readonly [Py, Py]> = []
      for (let i = 0; i < v.items.length; i += 2) items.push([toPy(v.items[i]!), toPy(v.items[i + 1]!)])
      return { kind: "dict", items }
    }
    case "global":
      return { kind: "global", module: v.module, name: v.name }
    case "pref":
      return { kind: "pref", pid: toPy(v.pid) }
    case "object":
      return v.state === undefined
        ? { kind: "reduce", callable: toPy(v.callable), args: toPy(v.args) }
        : { kind: "reduce", callable: toPy(v.callable), args: toPy(v.args), state: toPy(v.state) }
  }
}

/** Plain data for deepStrictEqual: bytes as arrays. */
const plain = (v: Py): unknown => JSON.parse(JSON.stringify(v, (_k, x) =>
  typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? [...x] : typeof x === "number" && !Number.isFinite(x) ?
  String(x) : Object.is(x, -0) ? "-0" : x))

describe("pickle opcodes", () => {
  it("ints: LONG1/LONG4 two's complement, BININT signs, protocol-0 INT/LONG and booleans", () => {
    assert.deepStrictEqual(decode("\x80\x02\x8a\x01\xff."), { kind: "int", value: -1 })
    assert.deepStrictEqual(decode("\x80\x02\x8a\x02\x00\x80."), { kind: "int", value: -32768 })
    assert.deepStrictEqual(decode("\x80\x02\x8a\x00."), { kind: "int", value: 0 })
    assert.deepStrictEqual(decode("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."), {
      kind: "int",
      value: 2n ** 63n
    })
    assert.deepStrictEqual(decode("\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."), { kind: "int", value: -(2n ** 63n) })
    assert.deepStrictEqual(decode("\x80\x02\x8b\x01\x00\x00\x00\xfe."), { kind: "int", value: -2 })
    assert.deepStrictEqual(decode("J\xff\xff\xff\xff."), { kind: "int", value: -1 })
    assert.deepStrictEqual(decode("I01\n."), { kind: "bool", value: true })
    assert.deepStrictEqual(decode("I00\n."), { kind: "bool", value: false })
    assert.deepStrictEqual(decode("I-42\n."), { kind: "int", value: -42 })
    assert.deepStrictEqual(decode("L1180591620717411303424L\n."), { kind: "int", value: 2n ** 70n })
  })

  it("floats stay floats, also integral ones; protocol-0 FLOAT reads inf and nan", () => {
    assert.deepStrictEqual(decode("G?\xf0\x00\x00\x00\x00\x00\x00."), { kind: "float", value: 1 })
    assert.deepStrictEqual(decode("F1.5\n."), { kind: "float", value: 1.5 })
    assert.deepStrictEqual(decode("F-inf\n."), { kind: "float", value: -Infinity })
    assert.isTrue(Number.isNaN((decode("Fnan\n.") as { value: number }).value))
  })

  it("Python 2 strings are bytes; protocol-0 STRING is unescaped, with the codec's literal reading kept", () => {
    assert.deepStrictEqual(decode("U\x02hi."), { kind: "bytes", value: b("hi"), py2: true })
    assert.deepStrictEqual(decode("S'a\\nb\\x00'\n."), {
      kind: "bytes",
      value: b("a\nb\x00"),
      py2: true,
      codec: b("a\\nb\\x00")
    })
    assert.deepStrictEqual(decode("S'plain'\n."), { kind: "bytes", value: b("plain"), py2: true })
  })

  it("str: UTF-8 with surrogatepass, protocol-0 UNICODE as raw-unicode-escape", () => {
    assert.deepStrictEqual(decode("X\x03\x00\x00\x00\xe2\x9c\x93."), { kind: "str", value: "✓" })
    const lone = decode("X\x03\x00\x00\x00\xed\xa0\x80.")
    assert.deepStrictEqual(lone, { kind: "str", value: "\ud800", surrogates: b("\xed\xa0\x80") })
    assert.deepStrictEqual(decode("V\xe9\\u2713\\U0001f600\n."), { kind: "str", value: "é✓😀", codec: null })
    assert.deepStrictEqual(decode("Vx\\u2713\n."), { kind: "str", value: "x✓", codec: "x\\u2713" })
    assert.instanceOf(thrown(() => decode("X\x01\x00\x00\x00\xff.")), PickleError)
  })

  it("memo: a finished object fetched again is the same node; one still being built is a snapshot", () => {
    // l = [1]; ([l], l): l is finished (inside the outer list) when fetched again
    const shared = decode("\x80\x03](]q\x00K\x01aeh\x00\x86.") as { items: Array<PickleValue> }
    const [outer, again] = shared.items as [{ items: Array<PickleValue> }, PickleValue]
    assert.strictEqual(outer.items[0], again)
    // (l, l), as CPython writes it: l is still on the stack, so the second is a snapshot (same content)
    const pair = decode("\x80\x03]q\x00K\x01ah\x00\x86.") as { items: Array<PickleValue> }
    assert.deepStrictEqual(pair.items[1], { kind: "list", items: [{ kind: "int", value: 1 }], memoCopy: true })
    // a = []; a.append(a): the codec's view is [[]]
    const rec = decode("\x80\x03]q\x00h\x00a.") as { items: Array<PickleValue> }
    assert.deepStrictEqual(rec.items, [{ kind: "list", items: [], memoCopy: true }])
    // a list fetched from the memo and then appended to is copied first: the memo keeps the original
    const cow = decode("\x80\x03]q\x00K\x01a0h\x00K\x02ah\x00\x86.") as { items: Array<{ items: Array<unknown> }> }
    assert.strictEqual(cow.items[0]!.items.length, 2)
    assert.strictEqual(cow.items[1]!.items.length, 1)
  })

  it("objects: REDUCE, NEWOBJ, NEWOBJ_EX, BUILD, INST, OBJ; set(list) becomes the set", () => {
    const r = decode("\x80\x03cmods\nItem\n)\x81}X\x01\x00\x00\x00xK\x01sb.")
    assert.deepStrictEqual(r, {
      kind: "object",
      op: "newobj",
      callable: { kind: "global", module: "mods", name: "Item" },
      args: { kind: "tuple", items: [] },
      state: { kind: "dict", items: [{ kind: "str", value: "x" }, { kind: "int", value: 1 }] }
    })
    assert.deepStrictEqual(decode("\x80\x03cbuiltins\nset\n]K\x01a\x85R."), {
      kind: "set",
      items: [{ kind: "int", value: 1 }]
    })
    // INST mods.P(1); OBJ mods.P(2); MARK None POP_MARK; POP: the INST object is left
    const reader = new PickleReader(b("(K\x01imods\nP\n(cmods\nP\nK\x02o(N10."))
    assert.deepStrictEqual(reader.next(), {
      kind: "object",
      op: "inst",
      callable: { kind: "global", module: "mods", name: "P" },
      args: { kind: "tuple", items: [{ kind: "int", value: 1 }] }
    })
    assert.strictEqual(reader.codecRejects.length, 3)
    assert.match(reader.codecRejects.join(), /INST.*OBJ.*POP_MARK/)
  })

  it("refuses what cannot be decoded: EXT codes, out-of-band buffers, protocol 6, a missing memo entry", () => {
    for (const [bytes, problem] of [
      ["\x80\x02\x82\x01.", /unregistered extension code 1/],
      ["\x80\x05\x97.", /out-of-band/],
      ["\x80\x06N.", /protocol 6/],
      ["\x80\x02h\x05.", /memo index 5 not found/],
      ["\x80\x02N", /truncated/],
      ["0.", /stack underflow/]
    ] as const) {
      const e = thrown(() => decode(bytes))
      assert.instanceOf(e, PickleError, bytes)
      assert.match((e as PickleError).message, problem)
    }
  })
})

// -- random values --

const keyArb: fc.Arbitrary<Py> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 12 }).map((value): Py => ({ kind: "str", value })),
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map((value): Py => ({ kind: "int", value }))
)

const { value: pyArb } = fc.letrec<{ value: Py }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant<Py>({ kind: "none" }),
    fc.boolean().map((value): Py => ({ kind: "bool", value })),
    fc.oneof(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), fc.integer({ min: -300, max: 70000 }).map(BigInt))
      .map((value): Py => ({ kind: "int", value })),
    fc.double().map((value): Py => ({ kind: "float", value })),
    fc.string({ unit: "binary", maxLength: 20 }).map((value): Py => ({ kind: "str", value })),
    fc.uint8Array({ maxLength: 300 }).map((value): Py => ({ kind: "bytes", value })),
    fc.array(tie("value"), { maxLength: 4 }).map((items): Py => ({ kind: "list", items })),
    fc.array(tie("value"), { maxLength: 5 }).map((items): Py => ({ kind: "tuple", items })),
    fc.array(fc.tuple(keyArb, tie("value")), { maxLength: 4 }).map((items): Py => ({ kind: "dict", items })),
    fc.array(keyArb, { maxLength: 3 }).map((items): Py => ({ kind: "set", items })),
    fc.array(keyArb, { maxLength: 3 }).map((items): Py => ({ kind: "frozenset", items })),
    fc.tuple(fc.constantFrom("mods", "datetime", "a.b"), fc.constantFrom("Item", "x_y")).map(([module, name]): Py => ({
      kind: "global",
      module,
      name
    })),
    fc.uint8Array({ minLength: 8, maxLength: 8 }).map((oid): Py => ({
      kind: "pref",
      pid: { kind: "tuple", items: [{ kind: "bytes", value: oid }, { kind: "none" }] }
    })),
    fc.tuple(tie("value"), fc.option(tie("value"), { nil: undefined })).map(([arg, state]): Py =>
      state === undefined
        ? { kind: "reduce", callable: { kind: "global", module: "mods", name: "R" }, args: { kind: "tuple", items: [arg] } }
        : {
          kind: "reduce",
          callable: { kind: "global", module: "mods", name: "R" },
          args: { kind: "tuple", items: [arg] },
          state
        }
    ),
    // the same object twice: written once, then fetched from the memo
    tie("value").map((x): Py => ({ kind: "tuple", items: [x, { kind: "list", items: [x] }] }))
  )
}))

const seeded = (seed: number) => {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return (s >>> 0) / 2 ** 32
  }
}

/** Protocols below 3 have no bytes type: Python 2 strings, which decode as bytes too. */
describe("pickle round trip", () => {
  it("decodes what the test pickler wrote, in every protocol and variant", () => {
    fc.assert(
      fc.property(pyArb, fc.integer({ min: 0, max: 5 }), fc.integer(), (v, protocol, seed) => {
        const bytes = pickle(v, { protocol, rand: seeded(seed) })
        assert.deepStrictEqual(plain(toPy(decodePickle(bytes))), plain(v))
      }),
      { numRuns: 1500 }
    )
  })

  it("records of random states give JSON that PostgreSQL takes, in both modes", () => {
    fc.assert(
      fc.property(pyArb, fc.integer({ min: 1, max: 5 }), fc.integer(), (v, protocol, seed) => {
        const bytes = new Pickler({ protocol, rand: seeded(seed) }).dump({ kind: "global", module: "mods", name: "Item" })
          .dump(v).bytes()
        for (const mode of ["codec", "faithful"] as const) {
          const d = decodeRecord(bytes, { mode })
          assert.strictEqual(jsonbRefusal(d.stateJson), undefined, d.stateJson)
          assert.strictEqual(d.stateSize, bytes.length)
        }
      }),
      { numRuns: 800 }
    )
  })
})

describe("pickle robustness", () => {
  const onlyRecordErrors = (bytes: Uint8Array) => {
    for (const f of [() => decodePickle(bytes), () => decodeRecord(bytes), () => decodeRecord(bytes, { mode: "codec" })]) {
      const e = thrown(f)
      if (e !== undefined && !(e instanceof PickleError || e instanceof ClassPickleError || e instanceof StateError)) {
        throw new Error(`not a RecordError: ${String(e)}`)
      }
    }
  }

  it("random bytes fail with a PickleError (or decode), nothing else", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), onlyRecordErrors), { numRuns: 5000 })
    // bytes made mostly of opcodes, so that more of them get past the first few
    const ops = [..."().012FIJKLMNPQRSTUVXabcdeghijlopqrstu}]G"].map((c) => c.charCodeAt(0))
    const opcodeBytes = fc.array(fc.oneof(fc.constantFrom(...ops, 0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c,
      0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x96, 0x98), fc.integer({ min: 0, max: 255 })), { maxLength: 80 })
      .map((a) => Uint8Array.from(a))
    fc.assert(fc.property(opcodeBytes, onlyRecordErrors), { numRuns: 5000 })
  })

  it("a state shared through the memo that unfolds past the record's limits is refused with a StateError, not written out", () => {
    const classPickle = Buffer.from("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.", "latin1")
    const doubling = (n: number) => Buffer.from([0x80, 0x03, 0x5d, ...Array(n).fill([0x32, 0x86]).flat(), 0x2e])
    // 2^14 leaves: shared, repeated in JSON as the codec does, and well inside the limits
    const small = decodeRecord(Buffer.concat([classPickle, doubling(14)]), { mode: "codec" })
    assert.strictEqual(small.stateJson.split("[]").length - 1, 2 ** 14)
    for (const n of [24, 40, 60]) {
      for (const mode of ["codec", "faithful"] as const) {
        const e = thrown(() => decodeRecord(Buffer.concat([classPickle, doubling(n)]), { mode }))
        assert.instanceOf(e, StateError)
        assert.match((e as StateError).message, /unfolds/)
      }
    }
    // a transaction extension that unfolds is kept as pickled, as one json.dumps cannot encode
    const ext = Buffer.from([0x80, 0x03, 0x7d, 0x58, 1, 0, 0, 0, 0x61, 0x5d, ...Array(40).fill([0x32, 0x86]).flat(), 0x73, 0x2e])
    assert.deepStrictEqual(Buffer.from(extensionBytes(ext)), ext)
    const smallExt = Buffer.from([0x80, 0x03, 0x7d, 0x58, 1, 0, 0, 0, 0x61, 0x5d, 0x32, 0x86, 0x73, 0x2e])
    assert.strictEqual(Buffer.from(extensionBytes(smallExt)).toString(), '{"a": [[], []]}')
  })

  it("a pickle that repeats DUP over a large list fails with a PickleError instead of copying it quadratically", () => {
    const n = 50_000
    const list = [0x80, 0x03, 0x5d, 0x28, ...Array(n).fill([0x4b, 0x01]).flat(), 0x65]
    const dups = Buffer.from([...list, ...Array(200_000).fill(0x32), 0x2e])
    const e = thrown(() => decodePickle(dups))
    assert.instanceOf(e, PickleError)
    assert.match((e as PickleError).message, /copies more than/)
    // a few DUPs of the same list are fine
    assert.strictEqual(decodePickle(Buffer.from([...list, 0x32, 0x32, 0x87, 0x2e])).kind, "tuple")
  })

  it("a class pickle whose args nest a memo-shared tuple, and set(list) repeated over a big list, end quickly", () => {
    // (GLOBAL, newargs) where each level is a TUPLE3 of the level below, three times: 3^30 if written out
    const levels = [0x29, 0x71, 0x00] // EMPTY_TUPLE, BINPUT 0
    for (let i = 0; i < 30; i++) levels.push(0x68, 0x00, 0x68, 0x00, 0x68, 0x00, 0x87, 0x71, 0x00)
    const cls = Buffer.from([0x80, 0x02, ...Buffer.from("cmods\nItem\n", "latin1"), ...levels, 0x86, 0x2e])
    const record = Buffer.concat([cls, Buffer.from([0x80, 0x02, 0x7d, 0x2e])])
    const started = performance.now()
    const e = thrown(() => decodeRecord(record))
    assert.isBelow(performance.now() - started, 2000)
    if (e !== undefined) assert.instanceOf(e, ClassPickleError)
    // builtins.set(bigList) 20,000 times: each copies the list
    const big = [0x80, 0x02, 0x63, ...Buffer.from("builtins\nset\n", "latin1"), 0x71, 0x01,
      0x5d, 0x28, ...Array(50_000).fill([0x4b, 0x01]).flat(), 0x65, 0x85, 0x71, 0x02]
    const sets = Buffer.from([...big, ...Array(20_000).fill([0x68, 0x01, 0x68, 0x02, 0x52, 0x30]).flat(), 0x4e, 0x2e])
    const s = thrown(() => decodePickle(sets))
    assert.instanceOf(s, PickleError)
    assert.match((s as PickleError).message, /copies more than/)
  })

  it("a dict shared 100,000 times is written out and its loss names the first places and counts the rest", () => {
    const cls = Buffer.from("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.", "latin1")
    // as CPython's pickler writes a list: APPENDS in batches of 1,000
    const batch = [0x28, ...Array(1000).fill([0x68, 0x01]).flat(), 0x65]
    const body = Buffer.from([0x80, 0x03, 0x5d, 0x7d, 0x71, 0x01, 0x61, ...Array(100).fill(batch).flat(), 0x2e])
    const decoded = decodeRecord(Buffer.concat([cls, body]), { mode: "codec" })
    const shared = decoded.losses.find((l) => l.reason === "shared-object")
    assert.isDefined(shared)
    assert.isBelow(shared!.detail.length, 1000)
    assert.match(shared!.detail, /\.\.\. and \d+ more/)
  })

  it("every cut of a valid pickle fails with a PickleError; mutated pickles never throw anything else", () => {
    fc.assert(
      fc.property(pyArb, fc.integer({ min: 0, max: 5 }), fc.integer(), fc.nat(), fc.nat(255), (v, protocol, seed, at, x) => {
        const bytes = pickle(v, { protocol, rand: seeded(seed) })
        const cut = bytes.subarray(0, at % bytes.length)
        assert.instanceOf(thrown(() => decodePickle(cut)), PickleError)
        const mutated = Uint8Array.from(bytes)
        mutated[at % bytes.length] = x
        onlyRecordErrors(mutated)
      }),
      { numRuns: 1500 }
    )
  })
})
