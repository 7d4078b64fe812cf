import { defineConfig } from "vitest/config"

// Node 20 (the machine default; the project needs >= 22.19, `.ci/run` installs 24) lacks Map.groupBy, and
// vitest 5's reporter calls it when it prints failures: the run still fails, but every failure message is
// replaced by "Map.groupBy is not a function". This config runs in vitest's main process, so a guarded
// polyfill here keeps failures readable on Node 20; it does nothing on Node >= 21.
const MapWithGroupBy = Map as unknown as { groupBy?: unknown }
if (typeof MapWithGroupBy.groupBy !== "function") {
  MapWithGroupBy.groupBy = <K, T>(items: Iterable<T>, key: (item: T, index: number) => K): Map<K, Array<T>> => {
    const groups = new Map<K, Array<T>>()
    let i = 0
    for (const item of items) {
      const k = key(item, i++)
      const group = groups.get(k)
      if (group === undefined) groups.set(k, [item])
      else group.push(item)
    }
    return groups
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One throwaway PostgreSQL cluster per run (or LO_MIGRATE_TEST_PG_URL); see the file's header.
    // and one real Ceph RGW when the run includes test/rgw/ (started in the background; see rgwSetup.ts)
    globalSetup: ["test/support/globalSetup.ts", "test/support/rgwSetup.ts"],
    // Integration tests move real bytes through PostgreSQL and s3rver on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // Two workers for two cores; the PostgreSQL server and s3rver compete for the same cores, so more
    // workers would only add contention. Files run in parallel, tests inside a file sequentially.
    pool: "forks",
    maxWorkers: 2,
    // s3rver (in-process in the workers) builds ListObjectsV2 continuation tokens with DES, which
    // OpenSSL 3 only offers through the legacy provider: without this, listing past 1000 keys fails
    // with HTTP 500 (FIELD-NOTES §13). Applies to forked workers only.
    execArgv: ["--openssl-legacy-provider"],
    // PGSSLMODE: the tool defaults to libpq's sslmode=prefer, and the throwaway cluster offers TLS; the
    // tests talk plaintext unless they ask for TLS (sslmode in the URL, or their own PGSSLMODE), because
    // TcpProxy's statement rules read the frontend protocol (test/ConnectionString.test.ts covers prefer)
    env: { TZ: "UTC", PGSSLMODE: "disable" }
  }
})
