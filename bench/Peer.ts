/**
 * The two-step peer: what a user who does not find lo-migrate writes. Step 1 exports every large object
 * to a directory with psql's client-side `\lo_export` (server-side `lo_export()` needs a superuser), one
 * psql session running a script of one `\lo_export` per row that a first psql call generates from
 * `_nice_binary`; step 2 is `rclone copy <dir> :s3:<bucket>/<prefix> --transfers 16` with Debian's rclone
 * and an S3 remote given by flags (provider Other, path-style, the bench's credentials), otherwise
 * rclone's defaults. Both steps run under GNU time (Measure.runTimed), so each one's wall time, CPU and
 * peak RSS are the kernel's account of those processes. Afterwards the directory must hold every object
 * at its size and the bucket must list every one of them at its size, or the case fails: a peer that
 * exported or uploaded less cannot look fast.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { findPgBinDir } from "../src/embedded/TempCluster.ts"
import { ACCESS, createBucket, type CpuRate, listBucket, type Measured, runTimed, SECRET } from "./Measure.ts"

export const peerTransfers = 16

const log = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`)

/** The path of `command` on PATH, or undefined. */
const which = (command: string): string | undefined => {
  try {
    return execFileSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

/**
 * `command` from Debian package `pkg`: installed with apt-get when missing and the bench runs as root
 * (`apt-get update` first if the plain install fails); otherwise the bench stops, naming the package.
 */
export const ensureCommand = (command: string, pkg: string): string => {
  const found = which(command)
  if (found !== undefined) return found
  if (process.getuid?.() !== 0) throw new Error(`the peer needs ${command}: install the Debian package ${pkg} (apt-get install -y ${pkg})`)
  log(`${command} is missing: apt-get install -y ${pkg}`)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  try {
    execFileSync("apt-get", ["install", "-y", "-q", pkg], { stdio: ["ignore", "ignore", "inherit"], env })
  } catch {
    execFileSync("apt-get", ["update", "-q"], { stdio: ["ignore", "ignore", "inherit"], env })
    execFileSync("apt-get", ["install", "-y", "-q", pkg], { stdio: ["ignore", "ignore", "inherit"], env })
  }
  const installed = which(command)
  if (installed === undefined) throw new Error(`apt-get install -y ${pkg} did not provide ${command}`)
  return installed
}

/** The tools of the peer: psql (the cluster's own, as the bench's copy baseline uses), rclone, GNU time. */
export const peerTools = () => {
  const bin = findPgBinDir()
  const psql = bin === undefined ? ensureCommand("psql", "postgresql-client") : join(bin, "psql")
  ensureCommand("/usr/bin/time", "time")
  const rclone = ensureCommand("rclone", "rclone")
  const rcloneVersion = execFileSync(rclone, ["version"], { encoding: "utf8" }).split("\n")[0]!.trim()
  const psqlVersion = execFileSync(psql, ["--version"], { encoding: "utf8" }).trim()
  return { psql, rclone, rcloneVersion, psqlVersion }
}

/** One step of the peer (or both): its rate, CPU and peak RSS. */
export interface PeerStep extends CpuRate {
  readonly maxRssMiB: number
}

export interface PeerRun {
  readonly export: PeerStep
  readonly upload: PeerStep
  /** both steps: wall and CPU added, peak RSS the larger */
  readonly total: PeerStep
}

/**
 * The export job as a user would script it: psql lists the rows and writes one `\lo_export OID 'FILE'`
 * line per large object, a second psql session runs that script (each `\lo_export` in its own
 * transaction, as psql does outside a transaction block), ON_ERROR_STOP so a failed export fails the job.
 * Files are named by the row's key (`hash`), as the user would want them in the bucket.
 */
const exportScript = `set -eu
"$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$PG_URL" \\
  -c "SELECT format('\\\\lo_export %s %s', data, quote_literal('$EXPORT_DIR/' || hash)) FROM _nice_binary ORDER BY hash" \\
  > "$JOB_DIR/export.sql"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$PG_URL" -f "$JOB_DIR/export.sql"
`

const step = (m: Measured, objects: number, bytes: number): PeerStep => ({
  objects,
  bytes,
  seconds: m.wall,
  cpuSeconds: m.cpuSeconds,
  maxRssMiB: m.maxRssMiB
})

/**
 * Runs the peer over every row of the database at `url` into `bucket` (created here) under `prefix`/;
 * `expected` is what the data set holds. Fails unless every object was exported and uploaded.
 */
export const peer = async (
  tools: ReturnType<typeof peerTools>,
  url: string,
  endpoint: string,
  bucket: string,
  expected: { readonly objects: number; readonly bytes: number },
  prefix = "peer"
): Promise<PeerRun> => {
  const job = mkdtempSync(join(tmpdir(), "lo-migrate-bench-peer-"))
  const exportDir = join(job, "export")
  try {
    execFileSync("mkdir", [exportDir])
    writeFileSync(join(job, "export.sh"), exportScript)
    const exported = await runTimed("the peer's lo_export (psql)", "bash", [join(job, "export.sh")], {
      env: { PSQL: tools.psql, PG_URL: url, EXPORT_DIR: exportDir, JOB_DIR: job }
    })
    const files = readdirSync(exportDir)
    const exportedBytes = files.reduce((n, f) => n + statSync(join(exportDir, f)).size, 0)
    if (files.length !== expected.objects || exportedBytes !== expected.bytes) {
      throw new Error(`the peer's lo_export wrote ${files.length} files of ${exportedBytes} bytes, not ${expected.objects} of ${expected.bytes}`)
    }
    await createBucket(endpoint, bucket)
    const config = join(job, "rclone.conf")
    writeFileSync(config, "")
    const uploaded = await runTimed("the peer's rclone copy", tools.rclone, [
      "copy", exportDir, `:s3:${bucket}/${prefix}`,
      "--transfers", String(peerTransfers),
      "--config", config,
      "--s3-provider", "Other",
      "--s3-endpoint", endpoint,
      "--s3-region", "us-east-1",
      "--s3-access-key-id", ACCESS,
      "--s3-secret-access-key", SECRET,
      "--s3-force-path-style=true",
      "--stats", "0",
      "-q"
    ], {
      // a CA bundle named in the environment (for real AWS endpoints) makes rclone's AWS SDK fail at
      // start-up on its own HTTP transport ("LoadCustomCABundleError"); s3rver is plain http
      unsetEnv: ["AWS_CA_BUNDLE"]
    })
    const listed = await listBucket(endpoint, bucket, `${prefix}/`)
    if (listed.objects !== expected.objects || listed.bytes !== expected.bytes) {
      throw new Error(`after the peer's rclone copy the bucket holds ${listed.objects} objects of ${listed.bytes} bytes under ${prefix}/, ` +
        `not ${expected.objects} of ${expected.bytes}\n${uploaded.stderr.slice(-4000)}`)
    }
    const e = step(exported, expected.objects, expected.bytes)
    const u = step(uploaded, expected.objects, expected.bytes)
    return {
      export: e,
      upload: u,
      total: {
        objects: expected.objects,
        bytes: expected.bytes,
        seconds: e.seconds + u.seconds,
        cpuSeconds: e.cpuSeconds + u.cpuSeconds,
        maxRssMiB: Math.max(e.maxRssMiB, u.maxRssMiB)
      }
    }
  } finally {
    rmSync(job, { recursive: true, force: true })
  }
}
