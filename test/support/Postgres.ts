// Per-suite PostgreSQL databases on the server that `globalSetup.ts` provides.
//
// Each build of `TestDatabase.layer` creates a fresh database with a unique name, owned by the ordinary
// app role, and drops it (WITH (FORCE)) when the layer's scope closes. Suites therefore never see each
// other's rows or large objects and can run in parallel workers.
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import type { PgTestServer } from "./context.js"

export type { PgTestServer } from "./context.js"

/** The server description provided by `globalSetup.ts` (only callable inside a vitest worker). */
export const pgTestServer = (): PgTestServer => inject("loMigratePg")

/** A postgres:// URL for `role` on `database` of the test server; keeps the query string of the admin URL. */
export const pgUrl = (server: PgTestServer, database: string, role = server.appRole,
  password = server.appPassword): string => {
  const url = new URL(server.adminUrl)
  const query = url.search
  return `postgres://${encodeURIComponent(role)}:${encodeURIComponent(password)}@${server.host}:${server.port}` +
    `/${encodeURIComponent(database)}${query}`
}

export interface TestDatabaseShape {
  /** The database name (unique per layer build). */
  readonly name: string
  /** postgres:// URL for the ordinary app role on this database: what the tool under test gets. */
  readonly url: string
  readonly host: string
  readonly port: number
  readonly role: string
  readonly password: string
}

let counter = 0
// Lowercase, starts with a letter, no quoting surprises; pid + counter + random keep parallel workers
// (and reruns against a shared external server) apart.
const uniqueName = () =>
  `lomigrate_t_${process.pid}_${++counter}_${randomBytes(4).toString("hex")}`

/** Runs `f` on a short-lived single connection as the admin (superuser, or the external CREATEDB role). */
const asAdmin = <A>(server: PgTestServer, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, SqlError.SqlError>) =>
  Effect.gen(function*() {
    return yield* f(yield* SqlClient.SqlClient)
  }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(server.adminUrl), maxConnections: 1 })))

/**
 * Runs `statements` as the test server's superuser on `database` (a throwaway cluster only: an external
 * server's role is no superuser, so tests that need this skip there).
 */
export const asSuperuser = (database: string, statements: ReadonlyArray<string>) => {
  const server = pgTestServer()
  return Effect.gen(function*() {
    const admin = yield* SqlClient.SqlClient
    for (const s of statements) yield* admin.unsafe(s)
  }).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl(server, database, "postgres", new URL(server.adminUrl).password)), maxConnections: 1 }))
  )
}

export class TestDatabase extends Context.Service<TestDatabase, TestDatabaseShape>()("test/TestDatabase") {
  /** A fresh database owned by the app role; dropped when the layer's scope closes. */
  static readonly layer: Layer.Layer<TestDatabase, SqlError.SqlError> = Layer.effect(
    TestDatabase,
    Effect.gen(function*() {
      const server = pgTestServer()
      const name = uniqueName()
      yield* Effect.acquireRelease(
        asAdmin(server, (sql) =>
          // An external role creates it for itself (it is the owner anyway); the superuser hands it over
          // so the app role can create tables in its public schema and own everything in it.
          sql.unsafe(server.external
            ? `CREATE DATABASE "${name}"`
            : `CREATE DATABASE "${name}" OWNER "${server.appRole}"`)),
        () =>
          // FORCE: pools of the test or of the tool under test may still hold connections.
          asAdmin(server, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).pipe(Effect.orDie)
      )
      return TestDatabase.of({
        name,
        url: pgUrl(server, name),
        host: server.host,
        port: server.port,
        role: server.appRole,
        password: server.appPassword
      })
    })
  )

  /**
   * `layer` plus a PgClient (and `SqlClient.SqlClient`) connected as the app role to that database.
   * The client's pool closes before the database is dropped.
   */
  static readonly layerClientWith = (
    options: { readonly maxConnections?: number; readonly maxMessageSize?: number } = {}
  ): Layer.Layer<TestDatabase | PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> =>
    Layer.unwrap(Effect.gen(function*() {
      const db = yield* TestDatabase
      return PgClient.layer({
        url: Redacted.make(db.url),
        maxConnections: options.maxConnections ?? 4,
        ...(options.maxMessageSize !== undefined ? { maxMessageSize: options.maxMessageSize } : {})
      })
    })).pipe(Layer.provideMerge(TestDatabase.layer))

  /** `layerClientWith()` with a pool of 4 connections. */
  static readonly layerClient: Layer.Layer<
    TestDatabase | PgClient.PgClient | SqlClient.SqlClient,
    SqlError.SqlError
  > = TestDatabase.layerClientWith()
}
