// Transaction extensions (src/zodb/codec/Extension.ts) against what zodb-pgjsonb wrote for the fixture
// transactions (expected/*-transactions.jsonl, read from the Data.fs files with the test walker), and
// json.dumps's corners on pickles made here.
import { assert, describe, it } from "@effect/vitest"
import { resolve } from "node:path"
import { extensionBytes } from "../../src/zodb/codec/Extension.ts"
import { readFileStorage } from "../support/FileStorage.ts"
import { pickle, type Py } from "../support/Pickler.ts"
import { expectedTransactions, zodbFixtures } from "../support/ZodbFixtures.ts"

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8")

describe("extension bytes of the fixture transactions", () => {
  for (const [name, dir] of [["filestorage", "filestorage"], ["history", "filestorage-history"]] as const) {
    it(`${name}: every transaction gives zodb-pgjsonb's bytes`, () => {
      const expected = expectedTransactions(name)
      const walked = readFileStorage(resolve(zodbFixtures(), dir, "Data.fs"))
      assert.deepStrictEqual(walked.map((t) => t.tid), expected.map((t) => t.tid))
      let withExtension = 0
      for (let i = 0; i < walked.length; i++) {
        const want = expected[i]!.extension_json
        assert.strictEqual(text(extensionBytes(walked[i]!.extension)), want ?? "", walked[i]!.tid)
        if (want !== null) withExtension++
      }
      assert.isAbove(withExtension, 2)
    })
  }
})

describe("extension bytes: json.dumps defaults", () => {
  const ext = (v: Py, protocol = 3) => text(extensionBytes(pickle(v, { protocol })))

  it("ensure_ascii, separators, tuples as lists, true/null, float repr, big ints", () => {
    const v: Py = {
      kind: "dict",
      items: [
        [{ kind: "str", value: "note" }, { kind: "str", value: "ün✓😀\n\"\\\u007f" }],
        [{ kind: "str", value: "tup" }, { kind: "tuple", items: [{ kind: "int", value: 1n }, { kind: "none" }] }],
        [{ kind: "str", value: "f" }, {
          kind: "list",
          items: [1.5, 1e16, 1e-5, 0.1, -0.0, NaN, Infinity, -Infinity, 1].map((x) => ({ kind: "float", value: x }) as Py)
        }],
        [{ kind: "str", value: "big" }, { kind: "int", value: 2n ** 70n }],
        [{ kind: "str", value: "flag" }, { kind: "bool", value: true }],
        [{ kind: "str", value: "nested" }, { kind: "dict", items: [] }]
      ]
    }
    assert.strictEqual(ext(v),
      '{"note": "\\u00fcn\\u2713\\ud83d\\ude00\\n\\"\\\\\\u007f", "tup": [1, null], ' +
        '"f": [1.5, 1e+16, 1e-05, 0.1, -0.0, NaN, Infinity, -Infinity, 1.0], "big": 1180591620717411303424, ' +
        '"flag": true, "nested": {}}')
  })

  it("keys: int, float, bool and None become strings; equal keys collapse as in a Python dict", () => {
    const v: Py = {
      kind: "dict",
      items: [
        [{ kind: "int", value: 1n }, { kind: "str", value: "a" }],
        [{ kind: "none" }, { kind: "str", value: "n" }],
        [{ kind: "float", value: 2.5 }, { kind: "str", value: "f" }],
        [{ kind: "bool", value: true }, { kind: "str", value: "b" }]
      ]
    }
    assert.strictEqual(ext(v), '{"1": "b", "null": "n", "2.5": "f"}')
  })

  it("empty bytes, an empty dict and a non-dict give no bytes", () => {
    assert.strictEqual(extensionBytes(new Uint8Array(0)).length, 0)
    assert.strictEqual(ext({ kind: "dict", items: [] }), "")
    assert.strictEqual(ext({ kind: "list", items: [{ kind: "int", value: 1n }] }), "")
  })

  it("what json.dumps refuses keeps the raw pickle: bytes, sets, tuple keys, huge ints, undecodable bytes", () => {
    const refused: ReadonlyArray<Py> = [
      { kind: "dict", items: [[{ kind: "str", value: "b" }, { kind: "bytes", value: Uint8Array.from([1]) }]] },
      { kind: "dict", items: [[{ kind: "str", value: "s" }, { kind: "set", items: [] }]] },
      { kind: "dict", items: [[{ kind: "tuple", items: [] }, { kind: "none" }]] },
      { kind: "dict", items: [[{ kind: "str", value: "i" }, { kind: "int", value: 10n ** 4300n }]] }
    ]
    for (const v of refused) {
      const raw = pickle(v, { protocol: 3 })
      assert.deepStrictEqual(extensionBytes(raw), raw)
    }
    const junk = Uint8Array.from([0x80, 3, 0xff])
    assert.deepStrictEqual(extensionBytes(junk), junk)
  })

  it("Python 2 str: ASCII ones are str (ZODB's loads), others bytes (raw pickle)", () => {
    const v = (b: Array<number>): Py => ({
      kind: "dict",
      items: [[{ kind: "bytes", value: Uint8Array.from([0x6b]) }, { kind: "bytes", value: Uint8Array.from(b) }]]
    })
    assert.strictEqual(ext(v([0x68, 0x69]), 1), '{"k": "hi"}')
    const raw = pickle(v([0xe9]), { protocol: 1 })
    assert.deepStrictEqual(extensionBytes(raw), raw)
  })
})
