// vitest globalSetup: one real Ceph RGW per test run for the files in test/rgw/ (see CephRgw.ts).
//
// When it starts: only when the run includes a file of test/rgw/ (a run of other files never pays for
// Ceph). It starts in the background: the other files run meanwhile, and the RGW files wait for it
// (Rgw.ts, `awaitRgw`). It is stopped and its directory removed when the run ends.
//
// When the Ceph programs are missing (`apt-get install ceph-mon ceph-osd radosgw ceph-common`):
// - with CI set (CI=true or 1, as CI systems set it; `.ci/run` sets LO_MIGRATE_TEST_RGW=1 itself) or
//   LO_MIGRATE_TEST_RGW=1, the RGW tests are required: the run fails here, naming what is missing;
// - otherwise the RGW tests are skipped, and the run says so loudly at its start and at its end.
// LO_MIGRATE_TEST_RGW=0 skips them on purpose (also said loudly). A start that fails with the programs
// present is a failure of the RGW tests, never a skip.
// LO_MIGRATE_TEST_RGW_URL=http://ACCESS:SECRET@127.0.0.1:7480 uses an RGW that is already running
// (its user may create and delete buckets); nothing is started.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, sep } from "node:path"
import type { TestProject } from "vitest/node"
import { cephPackages, missingCephPrograms, startRgw, type RgwCluster } from "./CephRgw.ts"
import type { RgwContext } from "./Rgw.ts"

const isRgwFile = (path: string) => path.includes(`${sep}test${sep}rgw${sep}`)

const truthy = (v: string | undefined) => v !== undefined && /^(1|true|yes)$/i.test(v.trim())

const banner = (reason: string) =>
  `\n${"!".repeat(100)}\n!! RGW TESTS SKIPPED: ${reason}\n!! Nothing was tested against Ceph RGW in this run. ` +
  `Install with: apt-get install ${cephPackages}; LO_MIGRATE_TEST_RGW=1 makes a missing RGW fail the run.\n${"!".repeat(100)}\n`

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // experimental vitest API: the files of this run; unknown (empty) means "maybe"
  const files = (project.vitest.state as { getPaths?: () => ReadonlyArray<string> } | undefined)?.getPaths?.() ?? []
  const provide = (value: RgwContext) => project.provide("loMigrateRgw", value)
  if (files.length > 0 && !files.some(isRgwFile)) {
    provide({ kind: "skipped", reason: "no RGW test file in this run" })
    return async () => undefined
  }

  const external = process.env.LO_MIGRATE_TEST_RGW_URL
  if (external !== undefined && external.trim() !== "") {
    const url = new URL(external)
    provide({
      kind: "ready",
      server: {
        endpoint: url.origin,
        accessKey: decodeURIComponent(url.username),
        secretKey: decodeURIComponent(url.password),
        region: "us-east-1",
        startSeconds: 0,
        version: "external (LO_MIGRATE_TEST_RGW_URL)"
      }
    })
    return async () => undefined
  }

  const flag = process.env.LO_MIGRATE_TEST_RGW?.trim()
  if (flag === "0") {
    const reason = "disabled by LO_MIGRATE_TEST_RGW=0"
    process.stderr.write(banner(reason))
    provide({ kind: "skipped", reason })
    return async () => void process.stderr.write(banner(reason))
  }
  const required = flag === "1" || truthy(process.env.CI)
  const missing = missingCephPrograms()
  if (missing.length > 0) {
    const reason = `the Ceph programs ${missing.join(", ")} are not on PATH`
    if (required) {
      throw new Error(
        `RGW tests are required (${flag === "1" ? "LO_MIGRATE_TEST_RGW=1" : `CI=${process.env.CI}`}), but ${reason}. ` +
          `Install them: apt-get install ${cephPackages}`
      )
    }
    process.stderr.write(banner(reason))
    provide({ kind: "skipped", reason })
    return async () => void process.stderr.write(banner(reason))
  }

  // started in the background; the RGW files wait for the status file
  // the cluster lives inside this directory, which its stop and watchdog remove with it
  const statusDir = mkdtempSync(join(tmpdir(), "lo-migrate-rgw-run-"))
  const statusFile = join(statusDir, "status.json")
  const abort = new AbortController()
  const verbose = truthy(process.env.LO_MIGRATE_TEST_RGW_VERBOSE)
  const starting: Promise<RgwCluster | undefined> = startRgw({
    parent: statusDir,
    removeParent: true,
    signal: abort.signal,
    log: (line) => {
      if (verbose || line.includes("ready")) process.stderr.write(`${line}\n`)
    }
  }).then(
    (cluster) => {
      writeFileSync(statusFile, JSON.stringify({ ok: true, server: cluster.server }))
      return cluster
    },
    (error: unknown) => {
      // the failed start removed the directory with the cluster's
      mkdirSync(statusDir, { recursive: true })
      writeFileSync(statusFile, JSON.stringify({ ok: false, error: error instanceof Error ? error.message : String(error) }))
      return undefined
    }
  )
  provide({ kind: "starting", statusFile })
  return async () => {
    abort.abort()
    const cluster = await starting
    await cluster?.stop()
    rmSync(statusDir, { recursive: true, force: true })
  }
}
