// vitest globalSetup: runs once per `vitest run` in the main process, before any worker starts.
//
// Gives every test run ONE PostgreSQL server; each test suite then creates its own database on it
// (see `Postgres.ts`). Two modes:
//
// - `LO_MIGRATE_TEST_PG_URL=postgres://user:pw@host:port/db` uses an existing server. That role must
//   have CREATEDB (each suite creates and drops a database of its own) and is used both to manage the
//   databases and by the tool under test. Nothing else on that server is touched.
// - Otherwise a throwaway cluster is created in a fresh temp dir on a free loopback port, tuned for
//   speed (no fsync), and removed again when the run ends. The tool under test connects as the ordinary
//   role `lomigrate` (no superuser, no CREATEDB), as it would in production; only this setup and the
//   database management in `Postgres.ts` use the superuser.
//
// Either way it also creates a scratch directory for the run (`inject("loMigrateRunDir")`, see TempDir.ts),
// removed at the end. The cluster itself is src/embedded/TempCluster.ts (shared with `lo-migrate demo`),
// whose watchdog stops it if the runner dies without running the teardown.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TestProject } from "vitest/node"
import { findPgBinDir, missingBinaries, startCluster } from "../../src/embedded/TempCluster.ts"
import type { PgTestServer } from "./context.js"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = mkdtempSync(join(tmpdir(), "lo-migrate-run-"))
  const removeRunDir = () => rmSync(runDir, { recursive: true, force: true })
  project.provide("loMigrateRunDir", runDir)
  const external = process.env.LO_MIGRATE_TEST_PG_URL
  if (external !== undefined && external !== "") {
    project.provide("loMigratePg", fromExternalUrl(external))
    return async () => removeRunDir()
  }
  const binDir = findPgBinDir(process.env.LO_MIGRATE_TEST_PG_BIN)
  if (binDir === undefined) {
    removeRunDir()
    throw new Error(`${missingBinaries} Or set LO_MIGRATE_TEST_PG_BIN or LO_MIGRATE_TEST_PG_URL.`)
  }
  const cluster = await startCluster({ binDir, name: "globalSetup", tls: true }).catch((e: unknown) => {
    removeRunDir()
    throw e
  })
  project.provide("loMigratePg", { ...cluster.server, external: false })
  return async () => {
    cluster.stop()
    removeRunDir()
  }
}

const fromExternalUrl = (raw: string): PgTestServer => {
  const url = new URL(raw)
  return {
    adminUrl: raw,
    host: url.hostname,
    port: url.port === "" ? 5432 : Number(url.port),
    appRole: decodeURIComponent(url.username),
    appPassword: decodeURIComponent(url.password),
    external: true
  }
}
