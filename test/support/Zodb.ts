// Shared pieces of the zodb-convert tests: the fixtures' expected rows, a config file for a test
// database and s3rver, the CLI, and the destination read back as it is.
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Fiber, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { assert } from "@effect/vitest"
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fixturesDir } from "../zodb/support/Fixtures.ts"
import { findPgBinDir } from "../../src/embedded/TempCluster.ts"
import { type CliOptions, runCli, zodbConvertBinPath } from "./Cli.ts"
import { TestDatabase, type TestDatabaseShape } from "./Postgres.ts"
import type { TestS3Shape } from "./S3.ts"

export const fixtures = fixturesDir

/**
 * The lines of a .jsonl file; each line's `state` keeps its raw text in `stateRaw` (JSON.parse would
 * round ints above 2^53, and the codec's text must reach PostgreSQL as it was written).
 */
export const jsonl = <A>(path: string): Array<A> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => {
    const parsed = JSON.parse(l) as Record<string, unknown>
    const raw = rawValue(l, "state")
    return (raw === undefined ? parsed : { ...parsed, stateRaw: raw }) as A
  })

/** The text of the value of top-level `key` in one JSON object line (strings and nesting respected). */
export const rawValue = (line: string, key: string): string | undefined => {
  const marker = line.indexOf(`"${key}":`)
  if (marker < 0) return undefined
  let i = marker + key.length + 3
  while (line[i] === " ") i++
  const start = i
  let depth = 0
  let inString = false
  for (; i < line.length; i++) {
    const c = line[i]
    if (inString) {
      if (c === "\\") i++
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    else if (c === "{" || c === "[") depth++
    else if (c === "}" || c === "]") {
      if (depth === 0) return line.slice(start, i).trim()
      depth--
    } else if (c === "," && depth === 0) return line.slice(start, i).trim()
  }
  return line.slice(start).trim()
}

/** A libpq keyword DSN for the test database, as the guide writes them. */
export const keywordDsn = (db: TestDatabaseShape) =>
  `dbname=${db.name} user=${db.role} password='${db.password.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}' host=${db.host} port=${db.port}`

export interface ConfigOptions {
  readonly source: string
  readonly db: TestDatabaseShape
  /** connect to the destination through this port (a fault proxy in front of the server) */
  readonly viaPort?: number | undefined
  /** S3 through this endpoint (a fault proxy in front of s3rver) */
  readonly s3Endpoint?: string | undefined
  readonly s3?: TestS3Shape | undefined
  readonly prefix?: string | undefined
  readonly historyPreserving?: boolean
  readonly blobThreshold?: string
}

export const filestorageSection = (path: string, blobDir?: string) =>
  `<filestorage source>\n  path ${path}\n${blobDir === undefined ? "" : `  blob-dir ${blobDir}\n`}</filestorage>\n`

/** A RelStorage source section for `dsn` (a libpq keyword DSN). */
export const relstorageSection = (dsn: string, keepHistory: boolean) =>
  `%import relstorage\n<relstorage source>\n  keep-history ${keepHistory}\n  <postgresql>\n    dsn ${dsn}\n  </postgresql>\n</relstorage>\n`

/** A zodb-convert config file in `dir`: `source` is the source section, the destination is the test database. */
export const writeConfig = (dir: string, options: ConfigOptions): string => {
  const s3 = options.s3
  const dsn = options.viaPort === undefined ? keywordDsn(options.db) : keywordDsn({ ...options.db, host: "127.0.0.1", port: options.viaPort })
  const text = `%import zodb_pgjsonb\n${options.source}\n<pgjsonb destination>\n  dsn ${dsn}\n` +
    `  history-preserving ${options.historyPreserving === true ? "true" : "false"}\n` +
    `  blob-threshold ${options.blobThreshold ?? "100KB"}\n` +
    (s3 === undefined ? "" : `  s3-bucket-name ${s3.bucket}\n  s3-endpoint-url ${options.s3Endpoint ?? s3.endpoint}\n  s3-region ${s3.region}\n` +
      `  s3-access-key ${s3.accessKey}\n  s3-secret-key ${s3.secretKey}\n  s3-use-ssl false\n` +
      (options.prefix === undefined ? "" : `  s3-prefix ${options.prefix}\n`)) +
    `</pgjsonb>\n`
  const path = NodePath.join(dir, "zodb-convert.conf")
  NodeFs.writeFileSync(path, text)
  return path
}

export const zodbConvert = (args: ReadonlyArray<string>, options: CliOptions = {}) =>
  runCli(args, { ...options, bin: zodbConvertBinPath })

export interface ExpectedRow {
  readonly tid: string
  readonly zoid: string
  readonly class_mod: string | null
  readonly class_name: string | null
  readonly state: unknown
  /** the codec's state text, unparsed */
  readonly stateRaw?: string
  readonly refs: ReadonlyArray<string>
  readonly state_size: number
  readonly kind?: "data" | "backpointer" | "no-data"
}

export interface ExpectedTransaction {
  readonly tid: string
  readonly user: string
  readonly description: string
  readonly extension_json: string | null
}

export interface ExpectedBlob {
  readonly zoid: string
  readonly tid: string
  readonly size: number
  readonly sha256: string
}

/** The signed i64 of 16 hex digits, as zodb-pgjsonb stores oids, tids and refs. */
export const signed = (hex: string): bigint => BigInt.asIntN(64, BigInt(`0x${hex}`))

/** The state text of an expected line: the file keeps the codec's text in `state` as JSON. */
export const stateText = (row: ExpectedRow): string | null =>
  row.stateRaw !== undefined && !(row.stateRaw === "null" && row.class_mod === null) ? row.stateRaw
  : row.state === null ? null : JSON.stringify(row.state)

/**
 * The rows of `expected` (records in commit order) that a history-free destination keeps: the last
 * revision of each oid, unless that revision deleted it.
 */
export const currentRows = (expected: ReadonlyArray<ExpectedRow>): Map<string, ExpectedRow> => {
  const current = new Map<string, ExpectedRow>()
  for (const row of expected) current.set(row.zoid, row)
  for (const [zoid, row] of current) if (row.kind === "no-data" || (row.state === null && row.class_mod === null)) current.delete(zoid)
  return current
}

/** Compares rows in PostgreSQL (jsonb equality, as the fixtures' README says); returns the differences. */
export const compareStates = (
  table: "object_state" | "object_history",
  rows: ReadonlyArray<ExpectedRow>
): Effect.Effect<ReadonlyArray<string>, unknown, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const diffs: Array<string> = []
    for (const row of rows) {
      const zoid = signed(row.zoid)
      const tid = signed(row.tid)
      const found = yield* sql.unsafe<{
        class_mod: string
        class_name: string
        state_size: string
        same: boolean | null
        refs: ReadonlyArray<string> | null
      }>(
        `SELECT class_mod, class_name, state_size::text AS state_size, refs::text[] AS refs,
                (state = $3::jsonb) OR (state IS NULL AND $3::jsonb IS NULL) OR (state = 'null'::jsonb AND $3::jsonb = 'null'::jsonb) AS same
         FROM ${table} WHERE zoid = $1 AND tid = $2`,
        [String(zoid), String(tid), stateText(row)]
      )
      const r = found[0]
      if (r === undefined) {
        diffs.push(`${row.zoid}@${row.tid}: no ${table} row`)
        continue
      }
      if (r.class_mod !== row.class_mod || r.class_name !== row.class_name) {
        diffs.push(`${row.zoid}@${row.tid}: class ${r.class_mod}.${r.class_name}, expected ${row.class_mod}.${row.class_name}`)
      }
      if (Number(r.state_size) !== row.state_size) diffs.push(`${row.zoid}@${row.tid}: state_size ${r.state_size}, expected ${row.state_size}`)
      if (r.same !== true) diffs.push(`${row.zoid}@${row.tid}: state differs`)
      // refs: the codec's refs, plus the bare-oid references it leaves out (a superset, in walk order)
      const have = new Set((r.refs ?? []).map((x) => BigInt(x)))
      for (const ref of row.refs) if (!have.has(signed(ref))) diffs.push(`${row.zoid}@${row.tid}: ref ${ref} missing`)
    }
    return diffs
  })

/**
 * Restores a pg_dump plain file (the fixtures' RelStorage databases) into `db` with psql, as the
 * ordinary role that owns it, as the fixtures' README says they were checked.
 */
export const restoreDump = (db: TestDatabaseShape, file: string): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const bin = findPgBinDir()
    const psql = bin === undefined ? "psql" : NodePath.join(bin, "psql")
    const child = spawn(psql, ["-v", "ON_ERROR_STOP=1", "-q", "-X", "-f", file], {
      env: { ...process.env, PGHOST: db.host, PGPORT: String(db.port), PGUSER: db.role, PGPASSWORD: db.password, PGDATABASE: db.name },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("close", (code) =>
      resume(code === 0 ? Effect.void : Effect.die(new Error(`psql -f ${file} exited ${code}: ${stderr}`))))
  })

/** The tables a conversion writes, with the key they are ordered by. */
const tables = [
  ["transaction_log", "tid"],
  ["object_state", "zoid"],
  ["blob_state", "zoid, tid"],
  ["object_history", "zoid, tid"]
] as const

/** A digest of every table's rows, in key order, as this database holds them. */
export const digest = (db: TestDatabaseShape) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const out: Record<string, string> = {}
    for (const [table, key] of tables) {
      const [present] = yield* sql.unsafe<{ t: string | null }>(`SELECT to_regclass('${table}')::text AS t`)
      if (present?.t === null) continue
      const [row] = yield* sql.unsafe<{ d: string | null; n: string }>(
        `SELECT md5(string_agg(t::text, '|' ORDER BY ${key})) AS d, count(*)::text AS n FROM ${table} t`
      )
      out[table] = `${row!.n}:${row!.d}`
    }
    const [seq] = yield* sql.unsafe<{ v: string }>(`SELECT last_value::text AS v FROM zoid_seq`)
    out.zoid_seq = seq!.v
    const [wm] = yield* sql.unsafe<{ t: string | null }>(`SELECT to_regclass('zodb_convert_watermark')::text AS t`)
    out.watermark_table = String(wm!.t)
    return out
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 1 })))

/** A database of its own, dropped when the scope closes. */
export const freshDb = Effect.map(Layer.build(Layer.fresh(TestDatabase.layer)), (c) => Context.get(c, TestDatabase))


/**
 * Runs `action` once the destination's transaction_log holds at least `count` rows (polled every 10 ms
 * on a connection of its own; nothing happens before the table exists): a kill lands mid-copy, at a
 * chosen point, however fast the machine is. Returns a canceller.
 */
export const whenCommitted = (db: TestDatabaseShape, count: number, action: () => void): (() => void) => {
  const poll = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (;;) {
      const rows = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM transaction_log`).pipe(
        Effect.orElseSucceed(() => [{ n: -1 }])
      )
      if ((rows[0]?.n ?? -1) >= count) return action()
      yield* Effect.sleep("10 millis")
    }
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 1 })))
  const fiber = Effect.runFork(poll.pipe(Effect.ignore))
  return () => {
    Effect.runFork(Fiber.interrupt(fiber))
  }
}

/**
 * blob_state holds every blob revision of `expected`, byte-identical: those of 100 KB or more in S3
 * under `prefix` (s3_key without it, data NULL), the others inline (s3_key NULL).
 */
export const assertBlobs = (expected: ReadonlyArray<ExpectedBlob>, s3: TestS3Shape, prefix?: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const state = yield* sql<{ zoid: string; tid: string; blob_size: string; data: Uint8Array | null; s3_key: string | null }>`
      SELECT zoid::text AS zoid, tid::text AS tid, blob_size::text AS blob_size, data, s3_key FROM blob_state`
    assert.strictEqual(state.length, expected.length)
    for (const b of expected) {
      const row = state.find((r) => BigInt(r.zoid) === signed(b.zoid) && BigInt(r.tid) === signed(b.tid))
      assert.isDefined(row, `${b.zoid}@${b.tid}`)
      assert.strictEqual(Number(row!.blob_size), b.size)
      if (b.size >= 100 * 1024) {
        assert.isNull(row!.data)
        assert.strictEqual(row!.s3_key, `blobs/${b.zoid}/${b.tid}.blob`)
        const object = yield* s3.getObject(prefix === undefined ? row!.s3_key! : `${prefix}/${row!.s3_key}`)
        assert.isTrue(object._tag === "Some", row!.s3_key!)
        if (object._tag === "Some") assert.strictEqual(createHash("sha256").update(object.value.bytes).digest("hex"), b.sha256)
      } else {
        assert.isNull(row!.s3_key)
        assert.strictEqual(createHash("sha256").update(row!.data!).digest("hex"), b.sha256, `${b.zoid}@${b.tid}`)
      }
    }
  })
