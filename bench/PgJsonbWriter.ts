/**
 * `npx tsx bench/PgJsonbWriter.ts`: the zodb-pgjsonb destination writer's insert rate against a plain
 * COPY of the same rows, on a throwaway cluster (the tests' setup: fsync and synchronous_commit off).
 *
 *   PGJSONB_BENCH_ROWS=10000   records per case (default 10,000)
 *   PGJSONB_BENCH_RUNS=3       runs per case, the median is printed
 *   PGJSONB_BENCH_NO_NOTIFY=1  writer cases with trg_notify_commit disabled (NOTIFY takes a cluster-wide
 *                              lock at commit, which serializes concurrent commits), to see what it costs
 *
 * Cases: one transaction of N records; N/10 transactions of 10 records, one at a time and 4 at once
 * (pool of 4), history-free and history-preserving; `\copy object_state FROM` (psql, CSV) of the same
 * rows into the same schema (indexes, trigger and foreign key in place), timed by psql's \timing.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { findPgBinDir } from "../src/embedded/TempCluster.ts"
import { make, type PgJsonbRecord, type PgJsonbTransaction } from "../src/zodb/destination/PgJsonbWriter.ts"
import * as PgJsonbSchema from "../src/zodb/destination/PgJsonbSchema.ts"
import { startPostgres } from "./Servers.ts"

const rows = Number(process.env.PGJSONB_BENCH_ROWS ?? 10_000)
const runs = Number(process.env.PGJSONB_BENCH_RUNS ?? 3)
const utf8 = (s: string) => new TextEncoder().encode(s)

const record = (i: number): PgJsonbRecord => {
  const state = JSON.stringify({ title: `Document ${i}`, id: `doc-${i}`, modified: { "@dt": "2024-05-01T12:00:00" }, parent: { "@ref": (i % 100).toString(16).padStart(16, "0") } })
  return { zoid: BigInt(i + 1), classMod: "plone.app.contenttypes.content", className: "Document", stateJson: state, stateSize: state.length + 40, refs: [BigInt(i % 100), BigInt(i % 7)] }
}
const transactions = (perTx: number): ReadonlyArray<PgJsonbTransaction> =>
  Array.from({ length: Math.ceil(rows / perTx) }, (_, t) => ({
    tid: BigInt(1000 + t),
    user: utf8("admin"),
    description: utf8(`/plone/doc-${t}`),
    extension: empty,
    records: Array.from({ length: Math.min(perTx, rows - t * perTx) }, (_, j) => record(t * perTx + j))
  }))
const empty = new Uint8Array(0)

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = async () => {
  const pg = await startPostgres()
  const server = pg.server
  const url = (db: string, role = server.appRole, password = server.appPassword) => {
    const u = new URL(server.adminUrl)
    return `postgres://${role}:${encodeURIComponent(password)}@${server.host}:${server.port}/${db}${u.search}`
  }
  let n = 0
  const admin = (statement: string) =>
    Effect.runPromise(Effect.gen(function*() {
      yield* (yield* SqlClient.SqlClient).unsafe(statement)
    }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(server.adminUrl), maxConnections: 1 }))))
  /** a fresh database owned by the app role; `f` gets a pool of 4 on it */
  const withDb = async <A>(f: (db: string) => Effect.Effect<A, unknown, SqlClient.SqlClient>): Promise<A> => {
    const db = `pgjsonb_bench_${process.pid}_${++n}`
    await admin(`CREATE DATABASE ${db} OWNER ${server.appRole}`)
    try {
      return await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(url(db)), maxConnections: 4 }))
        return yield* f(db).pipe(Effect.provideService(SqlClient.SqlClient, Context.get(ctx, SqlClient.SqlClient)))
      })))
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
    }
  }

  const writerCase = (hp: boolean, perTx: number, concurrency: number) => async () => {
    const txs = transactions(perTx)
    return withDb(() =>
      Effect.gen(function*() {
        const w = yield* make({ historyPreserving: hp })
        if (process.env.PGJSONB_BENCH_NO_NOTIFY === "1") {
          yield* (yield* SqlClient.SqlClient).unsafe(`ALTER TABLE transaction_log DISABLE TRIGGER trg_notify_commit`)
        }
        const t0 = performance.now()
        yield* Effect.forEach(txs, (t) => w.commit(t), { concurrency, discard: true })
        const ms = performance.now() - t0
        const [c] = yield* (yield* SqlClient.SqlClient).unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM object_state`)
        if (c?.n !== rows) throw new Error(`expected ${rows} rows, found ${c?.n}`)
        return ms
      })
    )
  }

  const psql = join(findPgBinDir() ?? "/usr/lib/postgresql/15/bin", "psql")
  const copyCase = (hp: boolean) => async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgjsonb-bench-"))
    try {
      const csv = join(dir, "rows.csv")
      const q = (s: string) => `"${s.replaceAll("\"", "\"\"")}"`
      const lines = Array.from({ length: rows }, (_, i) => {
        const r = record(i)
        return [r.zoid, 1000 + Math.floor(i / 10), q(r.classMod!), q(r.className!), q(r.stateJson!), r.stateSize, q(`{${r.refs.join(",")}}`)].join(",")
      })
      writeFileSync(csv, lines.join("\n") + "\n")
      return await withDb((db) =>
        Effect.gen(function*() {
          yield* PgJsonbSchema.ensure(yield* SqlClient.SqlClient, { historyPreserving: hp })
          yield* (yield* SqlClient.SqlClient).unsafe(
            `INSERT INTO transaction_log (tid) SELECT g FROM generate_series(1000, ${1000 + Math.ceil(rows / 10) - 1}) g`
          )
          const script = join(dir, "copy.sql")
          writeFileSync(script, `\\timing on\n\\copy object_state (zoid, tid, class_mod, class_name, state, state_size, refs) FROM '${csv}' WITH (FORMAT csv)\n`)
          const out = execFileSync(psql, ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", script, url(db)], { encoding: "utf8" })
          const m = /Time: ([\d.]+) ms/.exec(out)
          if (m === null) throw new Error(`no timing in psql's output: ${out}`)
          return Number(m[1])
        })
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }

  const cases: ReadonlyArray<[string, () => Promise<number>]> = [
    [`COPY ${rows} rows (psql \\copy, CSV), history-free schema`, copyCase(false)],
    [`writer, history-free: 1 transaction x ${rows} records`, writerCase(false, rows, 1)],
    [`writer, history-free: ${rows / 10} transactions x 10, one at a time`, writerCase(false, 10, 1)],
    [`writer, history-free: ${rows / 10} transactions x 10, 4 at once`, writerCase(false, 10, 4)],
    [`writer, history-preserving: 1 transaction x ${rows} records`, writerCase(true, rows, 1)],
    [`writer, history-preserving: ${rows / 10} transactions x 10, 4 at once`, writerCase(true, 10, 4)]
  ]
  const out: Array<string> = ["| case | median ms | rows/s |", "|---|---:|---:|"]
  try {
    for (const [name, run] of cases) {
      const times: Array<number> = []
      for (let i = 0; i < runs; i++) times.push(await run())
      const ms = median(times)
      out.push(`| ${name} | ${ms.toFixed(0)} | ${Math.round(rows / (ms / 1000)).toLocaleString("en-US")} |`)
      process.stderr.write(`${name}: ${times.map((t) => t.toFixed(0)).join(", ")} ms\n`)
    }
  } finally {
    await pg.stop()
  }
  process.stdout.write(out.join("\n") + "\n")
}

main().catch((e: unknown) => {
  process.stderr.write(`${String(e)}\n`)
  process.exit(1)
})
