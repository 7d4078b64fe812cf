// Shared by the zodb-pgjsonb destination tests: a fresh database per call, zodb-pgjsonb's own DDL text
// (test/data/zodb-pgjsonb-schema-1.14.sql) applied as written, and a dump of every destination table.
import { Effect, Layer } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { TestDatabase } from "../support/Postgres.ts"

/** Runs `effect` against a database of its own (owned by the ordinary test role), dropped afterwards. */
export const inFreshDb = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.provide(Layer.fresh(TestDatabase.layerClientWith({ maxConnections: 4 }))))

const referencePath = fileURLToPath(new URL("../data/zodb-pgjsonb-schema-1.14.sql", import.meta.url))

/** The sections of the reference file (`-- @section name`), each as its statements. */
export const referenceSections = (): Readonly<Record<string, ReadonlyArray<string>>> => {
  const out: Record<string, Array<string>> = {}
  let section: string | undefined
  let current: Array<string> = []
  let inBody = false
  for (const line of readFileSync(referencePath, "utf8").split("\n")) {
    const m = /^-- @section (\S+)/.exec(line)
    if (m !== null) {
      section = m[1]!
      out[section] = []
      continue
    }
    if (section === undefined) continue
    // a deliberately simple splitter, independent of src's: statements end with ';' at the end of a
    // line, except inside a $$ body
    if ((line.match(/\$\$/g) ?? []).length % 2 === 1) inBody = !inBody
    if (current.length === 0 && (line.trim() === "" || line.trim().startsWith("--"))) continue
    current.push(line)
    if (!inBody && line.trimEnd().endsWith(";")) {
      out[section]!.push(current.join("\n"))
      current = []
    }
  }
  return out
}

/** Applies zodb-pgjsonb's DDL as its install_schema + storage open would on an empty database. */
export const applyReference = (historyPreserving: boolean, lz4: boolean): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const s = referenceSections()
    const order = ["hf", ...(historyPreserving ? ["hp"] : []), ...(lz4 ? ["lz4", ...(historyPreserving ? ["lz4-hp"] : [])] : []), "open"]
    for (const name of order) for (const statement of s[name]!) yield* sql.unsafe(statement)
  })

/** Every row of the destination's tables (object_history when present), sorted, as comparable text. */
export const dumpTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [hp] = yield* sql<{ ok: boolean }>`SELECT to_regclass('object_history') IS NOT NULL AS ok`
  const q = (text: string) => Effect.map(sql.unsafe<Record<string, unknown>>(text), (rows) => rows.map((r) => JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v))))
  return {
    transaction_log: yield* q(`SELECT tid::text, username, description, encode(extension, 'hex') AS extension FROM transaction_log ORDER BY tid`),
    object_state: yield* q(`SELECT zoid::text, tid::text, class_mod, class_name, state::text, state_size, refs::text FROM object_state ORDER BY zoid`),
    object_history: hp?.ok === true
      ? yield* q(`SELECT zoid::text, tid::text, class_mod, class_name, state::text, state_size, refs::text FROM object_history ORDER BY zoid, tid`)
      : [],
    blob_state: yield* q(`SELECT zoid::text, tid::text, blob_size::text, encode(data, 'hex') AS data, s3_key FROM blob_state ORDER BY zoid, tid`)
  }
})
