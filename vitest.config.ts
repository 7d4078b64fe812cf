import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One throwaway PostgreSQL cluster per run (or LO_MIGRATE_TEST_PG_URL); see the file's header.
    globalSetup: ["test/support/globalSetup.ts"],
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
    env: { TZ: "UTC" }
  }
})
