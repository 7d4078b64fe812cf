// Values that `globalSetup.ts` hands to the test workers through vitest's provide/inject.
// They cross a process boundary (structured clone), so keep them plain data.

/** Where the test PostgreSQL server lives and how to reach it. */
export interface PgTestServer {
  /**
   * Connection URL with the rights to CREATE/DROP DATABASE: the cluster's superuser `postgres` for the
   * throwaway cluster, or the role of `LO_MIGRATE_TEST_PG_URL` (which needs CREATEDB).
   */
  readonly adminUrl: string
  readonly host: string
  readonly port: number
  /** The ordinary role the tool under test connects as (never a superuser on the throwaway cluster). */
  readonly appRole: string
  readonly appPassword: string
  /** true when the server came from `LO_MIGRATE_TEST_PG_URL` (admin and app role are the same). */
  readonly external: boolean
  /** PEM of the CA that signs the server's certificate, when the throwaway cluster offers TLS */
  readonly caFile?: string
  /**
   * The throwaway cluster's Unix-domain socket directory (`.s.PGSQL.<port>` in it): every role is trusted
   * there except TempCluster's SOCKET_PASSWORD_ROLE, which must give its password
   */
  readonly socketDir?: string
}

declare module "vitest" {
  export interface ProvidedContext {
    loMigratePg: PgTestServer
    /**
     * A scratch directory for this test run (s3rver data, staging dirs, ...). Removed when the run ends,
     * and by the watchdog if the runner dies, so temp dirs of killed workers do not pile up in /tmp.
     */
    loMigrateRunDir: string
  }
}
