/**
 * A snapshot of what one PostgreSQL schema holds, read from pg_catalog: per table its columns (type,
 * NOT NULL, default, TOAST compression), constraints, indexes and triggers; the sequences and functions.
 * Definitions come from pg_get_*def with the schema's own qualifier removed, so that two schemas (or two
 * databases) built by the same DDL give equal snapshots. PgJsonbSchema diffs the destination against the
 * snapshot of zodb-pgjsonb's DDL; the tests diff ours against zodb-pgjsonb's text.
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"

export interface Column {
  readonly name: string
  readonly type: string
  readonly notNull: boolean
  readonly default: string | null
  /** attcompression: "" (the server's default), "p" (pglz) or "l" (lz4) */
  readonly compression: string
}

export interface Table {
  readonly columns: ReadonlyArray<Column>
  /** constraint definition by name, e.g. `PRIMARY KEY (tid)` */
  readonly constraints: Readonly<Record<string, string>>
  /** index definition by name */
  readonly indexes: Readonly<Record<string, string>>
  /** trigger definition by name (internal triggers left out) */
  readonly triggers: Readonly<Record<string, string>>
}

export interface Sequence {
  readonly dataType: string
  readonly start: string
  readonly increment: string
  readonly min: string
  readonly max: string
  readonly cycle: boolean
  readonly cache: string
}

export interface Func {
  readonly arguments: string
  readonly result: string
  readonly language: string
  readonly source: string
}

export interface Snapshot {
  readonly schema: string
  readonly tables: Readonly<Record<string, Table>>
  readonly sequences: Readonly<Record<string, Sequence>>
  readonly functions: Readonly<Record<string, Func>>
}

type Raw = Record<string, unknown>

// `$1` is the schema name; `q` strips "schema." from a definition
const q = (expr: string) => `replace(${expr}, quote_ident(n.nspname) || '.', '')`

/** The snapshot of `schema` (default: `current_schema()`, where unqualified CREATE TABLE puts a table). */
export const snapshot = (
  sql: SqlClient.SqlClient,
  schema?: string
): Effect.Effect<Snapshot, SqlError.SqlError> =>
  Effect.gen(function*() {
    const [current] = yield* sql.unsafe<Raw>(`SELECT current_schema()::text AS s`)
    const nsp = schema ?? String(current?.s ?? "public")
    const columns = yield* sql.unsafe<Raw>(
      `SELECT c.relname::text AS t, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type,
         a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS def, a.attcompression::text AS compression
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
       ORDER BY c.relname, a.attnum`,
      [nsp]
    )
    const constraints = yield* sql.unsafe<Raw>(
      `SELECT c.relname::text AS t, k.conname::text AS name, ${q("pg_get_constraintdef(k.oid)")} AS def
       FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 ORDER BY 1, 2`,
      [nsp]
    )
    const indexes = yield* sql.unsafe<Raw>(
      `SELECT c.relname::text AS t, i.relname::text AS name, ${q("pg_get_indexdef(i.oid)")} AS def
       FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
       JOIN pg_catalog.pg_class c ON c.oid = x.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 ORDER BY 1, 2`,
      [nsp]
    )
    const triggers = yield* sql.unsafe<Raw>(
      `SELECT c.relname::text AS t, g.tgname::text AS name, ${q("pg_get_triggerdef(g.oid)")} AS def
       FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND NOT g.tgisinternal ORDER BY 1, 2`,
      [nsp]
    )
    const sequences = yield* sql.unsafe<Raw>(
      `SELECT sequencename::text AS name, data_type::text AS data_type, start_value::text AS start,
         increment_by::text AS increment, min_value::text AS min, max_value::text AS max, cycle,
         cache_size::text AS cache
       FROM pg_catalog.pg_sequences WHERE schemaname = $1 ORDER BY 1`,
      [nsp]
    )
    const functions = yield* sql.unsafe<Raw>(
      `SELECT p.proname::text AS name, pg_get_function_arguments(p.oid) AS args,
         pg_get_function_result(p.oid) AS result, l.lanname::text AS language, p.prosrc AS source
       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
       JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE n.nspname = $1 ORDER BY 1, 2`,
      [nsp]
    )
    const tables: Record<string, { columns: Array<Column>; constraints: Record<string, string>; indexes: Record<string, string>; triggers: Record<string, string> }> = {}
    const tableOf = (name: string) => (tables[name] ??= { columns: [], constraints: {}, indexes: {}, triggers: {} })
    for (const r of columns) {
      tableOf(String(r.t)).columns.push({
        name: String(r.name),
        type: String(r.type),
        notNull: r.not_null === true,
        default: r.def === null ? null : String(r.def),
        compression: String(r.compression ?? "")
      })
    }
    for (const r of constraints) tableOf(String(r.t)).constraints[String(r.name)] = String(r.def)
    for (const r of indexes) tableOf(String(r.t)).indexes[String(r.name)] = String(r.def)
    for (const r of triggers) tableOf(String(r.t)).triggers[String(r.name)] = String(r.def)
    return {
      schema: nsp,
      tables,
      sequences: Object.fromEntries(sequences.map((r) => [String(r.name), {
        dataType: String(r.data_type),
        start: String(r.start),
        increment: String(r.increment),
        min: String(r.min),
        max: String(r.max),
        cycle: r.cycle === true,
        cache: String(r.cache)
      }])),
      functions: Object.fromEntries(functions.map((r) => [String(r.name), {
        arguments: String(r.args),
        result: String(r.result),
        language: String(r.language),
        source: String(r.source)
      }]))
    }
  })

const describeColumn = (c: Column) =>
  `${c.name} ${c.type}${c.notNull ? " NOT NULL" : ""}${c.default === null ? "" : ` DEFAULT ${c.default}`}`

export interface DiffOptions {
  /** compare sequences' start values too (off: an existing sequence has moved on) */
  readonly sequenceStart?: boolean
  /** compare TOAST compression too */
  readonly compression?: boolean
}

/**
 * What `actual` lacks or has otherwise than `expected`, one line each, for the objects `expected` has:
 * tables, their columns, constraints, indexes and triggers; sequences; functions. Objects only `actual`
 * has are left out, except extra columns that a plain INSERT of `expected`'s columns would fail on
 * (NOT NULL without a default).
 */
export const diff = (expected: Snapshot, actual: Snapshot, options: DiffOptions = {}): ReadonlyArray<string> => {
  const out: Array<string> = []
  for (const [name, want] of Object.entries(expected.tables)) {
    const have = actual.tables[name]
    if (have === undefined) {
      out.push(`table ${name} is missing`)
      continue
    }
    for (const col of want.columns) {
      const got = have.columns.find((c) => c.name === col.name)
      if (got === undefined) out.push(`column ${name}.${col.name} is missing (expected ${describeColumn(col)})`)
      else if (got.type !== col.type || got.notNull !== col.notNull || got.default !== col.default) {
        out.push(`column ${name}.${col.name} is ${describeColumn(got)}, expected ${describeColumn(col)}`)
      } else if (options.compression === true && got.compression !== col.compression) {
        out.push(`column ${name}.${col.name} has compression '${got.compression}', expected '${col.compression}'`)
      }
    }
    for (const got of have.columns) {
      if (!want.columns.some((c) => c.name === got.name) && got.notNull && got.default === null) {
        out.push(`column ${name}.${got.name} (${describeColumn(got)}) is not zodb-pgjsonb's and has no default`)
      }
    }
    // constraints and indexes by definition: a renamed but equal one is as good
    const kinds = [["constraint", want.constraints, have.constraints], ["index", want.indexes, have.indexes], [
      "trigger",
      want.triggers,
      have.triggers
    ]] as const
    for (const [kind, wanted, had] of kinds) {
      const defs = new Set(Object.values(had))
      for (const [n, def] of Object.entries(wanted)) {
        if (had[n] === def || defs.has(def)) continue
        out.push(had[n] === undefined
          ? `${kind} ${n} on ${name} is missing (expected ${def})`
          : `${kind} ${n} on ${name} is ${had[n]}, expected ${def}`)
      }
    }
  }
  for (const [name, want] of Object.entries(expected.sequences)) {
    const have = actual.sequences[name]
    if (have === undefined) {
      out.push(`sequence ${name} is missing`)
      continue
    }
    const fields = (["dataType", "increment", "min", "max", "cycle", "cache", ...(options.sequenceStart === true ? ["start"] as const : [])] as const)
    for (const f of fields) {
      if (have[f] !== want[f]) out.push(`sequence ${name} has ${f} ${String(have[f])}, expected ${String(want[f])}`)
    }
  }
  for (const [name, want] of Object.entries(expected.functions)) {
    const have = actual.functions[name]
    if (have === undefined) out.push(`function ${name}() is missing`)
    else if (have.arguments !== want.arguments || have.result !== want.result || have.language !== want.language) {
      out.push(`function ${name}(${have.arguments}) returns ${have.result} in ${have.language}, expected ${name}(${want.arguments}) returns ${want.result} in ${want.language}`)
    } else if (have.source.trim() !== want.source.trim()) {
      out.push(`function ${name}() has another body than zodb-pgjsonb's`)
    }
  }
  return out
}
