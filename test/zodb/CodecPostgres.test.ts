// The codec's JSON in a real PostgreSQL: every fixture state we write equals the codec's under jsonb `=`,
// PostgreSQL takes every faithful state as jsonb, and the faithful float forms survive jsonb's text output
// where the codec's do not (the reason the faithful mode writes them).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { decodeRecord } from "../../src/zodb/codec/RecordCodec.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { expectedRecords } from "../support/ZodbFixtures.ts"

const records = () => ["filestorage", "history"].flatMap((n) => expectedRecords(n)).filter((e) => e.pickle !== null)

describe("codec JSON in PostgreSQL", () => {
  it.layer(TestDatabase.layerClient)((it) => {
    it.effect("all 675 fixture states equal the codec's under jsonb =, in codec mode", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const all = records()
        const expected = all.map((e) => e.stateText!)
        const ours = all.map((e) => decodeRecord(e.pickle!, { mode: "codec" }).stateJson)
        const [row] = yield* sql<{ readonly n: number; readonly equal: number }>`
          SELECT count(*)::int AS n, count(*) FILTER (WHERE e::jsonb = o::jsonb)::int AS equal
          FROM unnest(${expected}::text[], ${ours}::text[]) AS u(e, o)`
        assert.deepStrictEqual(row, { n: 675, equal: 675 })
      }))

    it.effect("every faithful state is valid jsonb, and lossless records stay jsonb-equal to the codec's", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const all = records().map((e) => ({ e, d: decodeRecord(e.pickle!) }))
        const lossless = all.filter(({ d }) => d.losses.length === 0)
        const [row] = yield* sql<{ readonly n: number; readonly valid: number }>`
          SELECT count(*)::int AS n, count(o::jsonb)::int AS valid FROM unnest(${all.map(({ d }) => d.stateJson)}::text[]) AS u(o)`
        assert.deepStrictEqual(row, { n: 675, valid: 675 })
        const [eq] = yield* sql<{ readonly equal: number }>`
          SELECT count(*) FILTER (WHERE e::jsonb = o::jsonb)::int AS equal
          FROM unnest(${lossless.map(({ e }) => e.stateText!)}::text[], ${lossless.map(({ d }) => d.stateJson)}::text[]) AS u(e, o)`
        assert.strictEqual(eq!.equal, lossless.length)
      }))

    it.effect("jsonb keeps 10000000000000000.0 a float and turns the codec's 1e16 into an integer", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const basic = records().find((e) => e.zoid === "0000000000000001")!
        const faithful = decodeRecord(basic.pickle!).stateJson
        const [row] = yield* sql<{ readonly ours: string; readonly codec: string; readonly eq: boolean }>`
          SELECT (${faithful}::jsonb -> 'data' ->> 'f16') AS ours,
                 (${basic.stateText!}::jsonb -> 'data' ->> 'f16') AS codec,
                 (${faithful}::jsonb -> 'data' -> 'f300') = (${basic.stateText!}::jsonb -> 'data' -> 'f300') AS eq`
        assert.deepStrictEqual(row, { ours: "10000000000000000.0", codec: "10000000000000000", eq: true })
      }))
  })
})
