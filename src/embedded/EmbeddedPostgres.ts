/**
 * A PostgreSQL for the demo, on a machine with nothing but Node:
 * - a throwaway cluster (TempCluster) when the server binaries are on PATH or in
 *   /usr/lib/postgresql/<version>/bin: the real thing, with an ordinary role as in production;
 * - otherwise PGlite (PostgreSQL in WASM) behind pglite-socket, which serves ONE connection: the run
 *   then uses a pool of 1. PGlite is an optional package, loaded only here.
 * Both are stopped and removed when the scope closes (also on Ctrl-C).
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted, Schedule, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import { EmbeddedUnavailable } from "../domain/DemoErrors.ts"
import { describeCause } from "../domain/Errors.ts"
import { findPgBinDir, startCluster } from "./TempCluster.ts"

export type Kind = "cluster" | "pglite"

export interface EmbeddedPostgres {
  readonly kind: Kind
  /** what it is, for the user: "PostgreSQL 16 throwaway cluster in /tmp/…" */
  readonly description: string
  /** URL of the database the demo migrates, for an ordinary role where there is one */
  readonly url: string
  /** connections the server accepts (PGlite: 1) */
  readonly maxConnections: number | undefined
  /**
   * Waits until the server holds no client connection: with PGlite's single slot, a new pool must not
   * connect before the previous pool's socket is gone on the server's side (it would be refused).
   */
  readonly idle: Effect.Effect<void>
}

export const pgliteVersions = { "@electric-sql/pglite": "0.5.14", "@electric-sql/pglite-socket": "0.2.17" } as const

const database = "lo_migrate_demo"

const cluster = (binDir: string): Effect.Effect<EmbeddedPostgres, EmbeddedUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = (cause: unknown) =>
      new EmbeddedUnavailable({ service: "PostgreSQL cluster", problem: cause instanceof Error ? cause.message : String(cause) })
    const started = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => startCluster({ binDir, prefix: "lo-migrate-demo-pg-", name: "demo" }), catch: fail }),
      (c) => Effect.sync(() => c.stop())
    )
    const { server } = started
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`CREATE DATABASE ${database} OWNER ${server.appRole}`)
    }).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(server.adminUrl), maxConnections: 1 })),
      Effect.mapError((e) => fail(new Error(describeCause(e))))
    )
    const version = binDir.match(/postgresql\/(\d+)/)?.[1]
    return {
      kind: "cluster" as const,
      description: `PostgreSQL${version === undefined ? "" : ` ${version}`} throwaway cluster in ${started.dir} ` +
        `(127.0.0.1:${server.port}, role ${server.appRole})`,
      url: `postgres://${server.appRole}:${encodeURIComponent(server.appPassword)}@127.0.0.1:${server.port}/${database}`,
      maxConnections: undefined,
      idle: Effect.void
    }
  })

// A variable specifier: the packages are optional, so neither tsc nor the bundle may require them.
const load = (name: string): Promise<any> => import(name)

/** `why`: why the cluster is not an option, said when PGlite is missing too (undefined: PGlite was asked for). */
const pglite = (why: string | undefined): Effect.Effect<EmbeddedPostgres, EmbeddedUnavailable, Scope.Scope> => Effect.gen(function*() {
  const fail = (cause: unknown) =>
    new EmbeddedUnavailable({ service: "PGlite", problem: cause instanceof Error ? cause.message : String(cause) })
  const modules = yield* Effect.tryPromise({
    try: () => Promise.all([load("@electric-sql/pglite"), load("@electric-sql/pglite-socket")]),
    catch: () =>
      new EmbeddedUnavailable({
        service: "PostgreSQL",
        problem: (why === undefined
          ? "PGlite is not installed: "
          : `${why}, and PGlite is not installed. Install either the server (e.g. apt-get install postgresql) or PGlite: `) +
          `npm install ${Object.entries(pgliteVersions).map(([n, v]) => `${n}@${v}`).join(" ")}`
      })
  })
  const [{ PGlite }, { PGLiteSocketServer }] = modules
  const db = yield* Effect.acquireRelease(
    Effect.tryPromise({ try: () => PGlite.create() as Promise<{ close: () => Promise<void> }>, catch: fail }),
    (db) => Effect.promise(() => db.close().catch(() => undefined))
  )
  // pglite-socket multiplexes every socket onto the one PGlite session: more than one breaks transactions
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 }) as {
    start: () => Promise<void>
    stop: () => Promise<void>
    getServerConn: () => string
    getStats: () => { readonly activeConnections: number }
  }
  yield* Effect.acquireRelease(
    Effect.tryPromise({ try: () => server.start(), catch: fail }),
    () => Effect.promise(() => server.stop().catch(() => undefined))
  )
  const [host, port] = server.getServerConn().split(":")
  return {
    kind: "pglite" as const,
    description: `PGlite (PostgreSQL in WASM, in this process) on ${host}:${port}, one connection`,
    url: `postgres://postgres@${host}:${port}/postgres`,
    maxConnections: 1,
    idle: Effect.sync(() => server.getStats().activeConnections).pipe(
      Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("50 millis") }),
      Effect.timeoutOption("10 seconds"),
      Effect.asVoid
    )
  }
})

const noBinaries = "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin"

/**
 * `prefer`: "auto" takes the cluster when the binaries are there, else PGlite; a cluster that cannot
 * start (e.g. root without a `postgres` OS user) falls back to PGlite too.
 */
export const start = (prefer: Kind | "auto"): Effect.Effect<EmbeddedPostgres, EmbeddedUnavailable, Scope.Scope> =>
  Effect.suspend(() => {
    if (prefer === "pglite") return pglite(undefined)
    const binDir = findPgBinDir()
    if (binDir !== undefined) {
      return prefer === "cluster"
        ? cluster(binDir)
        : cluster(binDir).pipe(Effect.catch((error) => pglite(`the PostgreSQL cluster did not start (${error.problem})`)))
    }
    if (prefer === "cluster") {
      return Effect.fail(new EmbeddedUnavailable({ service: "PostgreSQL cluster", problem: noBinaries }))
    }
    return pglite(noBinaries)
  })
