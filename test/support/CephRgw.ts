// A throwaway single-node Ceph cluster with its S3 gateway (RGW), on loopback, for the tests.
//
// One mon, one OSD on memstore (RAM: nothing touches the disk but the logs), no mgr (not needed for
// I/O), no cephx, pool size 1, and radosgw (beast frontend) on a free loopback port; an S3 user is
// created with radosgw-admin. Tests create their own buckets. Up in about 20 s on a 2-core machine.
// Needs the Debian packages ceph-mon, ceph-osd, radosgw and ceph-common (Ceph 16.2.15 on bookworm);
// daemons run as the current user (root in CI), every file lives in the cluster's directory.
//
// The trap that costs an hour: with auth none, radosgw still defaults to ms_mon_client_mode=secure,
// which cannot work without cephx (it fails with -13 at send_auth_request and never answers). Every
// messenger mode below is crc for that reason.
//
// Everything runs asynchronously (no execFileSync): the vitest main process that starts it keeps
// serving its workers meanwhile. `stop` kills the daemons and removes the directory; a detached
// watchdog does the same if the process that started the cluster dies without calling it.
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Http from "node:http"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"

/** The programs the cluster needs (all on PATH). */
export const cephPrograms = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "ceph-authtool", "monmaptool"] as const

/** The Debian packages that provide them. */
export const cephPackages = "ceph-mon ceph-osd radosgw ceph-common"

/** Which of `cephPrograms` are not on PATH (empty when all are there). */
export const missingCephPrograms = (): ReadonlyArray<string> => {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((d) => d !== "")
  return cephPrograms.filter((p) => !dirs.some((d) => existsSync(join(d, p))))
}

export interface RgwServer {
  /** http://127.0.0.1:<port>: path-style addressing */
  readonly endpoint: string
  readonly accessKey: string
  readonly secretKey: string
  readonly region: string
  /** the cluster's directory (config, logs), removed by `stop` */
  readonly dir: string
  /** how long the start took, in seconds */
  readonly startSeconds: number
  /** `radosgw --version`, e.g. "ceph version 16.2.15 (…) pacific (stable)" */
  readonly version: string
}

export interface RgwCluster {
  readonly server: RgwServer
  /** kills the daemons (SIGTERM, then SIGKILL after 1.5 s) and removes the directory; idempotent */
  readonly stop: () => Promise<void>
}

export interface RgwStartOptions {
  /** parent of the cluster's directory (default: the OS temp dir) */
  readonly parent?: string
  /** `stop` and the watchdog remove `parent` too (a directory of the caller's that holds the cluster's) */
  readonly removeParent?: boolean
  /** memstore size: the most the OSD holds in RAM (default 2 GiB) */
  readonly memstoreBytes?: number
  /** progress lines */
  readonly log?: (line: string) => void
  /** gives up (and cleans up) when aborted */
  readonly signal?: AbortSignal
}

const daemons = ["rgw", "osd", "mon"] as const
type Daemon = (typeof daemons)[number]

export const startRgw = async (options: RgwStartOptions = {}): Promise<RgwCluster> => {
  const t0 = Date.now()
  const log = options.log ?? (() => undefined)
  const dir = mkdtempSync(join(options.parent ?? tmpdir(), "lo-migrate-rgw-"))
  for (const sub of ["run", "log", "crash", "mon/ceph-a", "osd/ceph-0", "rgw", "pids"]) mkdirSync(join(dir, sub), { recursive: true })
  const conf = join(dir, "ceph.conf")
  const children = new Map<Daemon, ChildProcess>()
  let stopped: Promise<void> | undefined
  const removed = options.removeParent === true && options.parent !== undefined ? options.parent : dir
  const watchdog = startWatchdog(dir, removed)

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await Promise.all([...children.values()].map((child) => terminate(child)))
      // daemons that tests started on this cluster (extraRgw) and left behind
      for (const pid of recordedPids(dir, [...children.values()])) {
        try { process.kill(pid, "SIGKILL") } catch { /* gone */ }
      }
      if (watchdog !== undefined) {
        try { process.kill(watchdog) } catch { /* gone */ }
      }
      rmSync(removed, { recursive: true, force: true })
    })()
    return stopped
  }
  const onAbort = () => void stop()
  options.signal?.addEventListener("abort", onAbort, { once: true })

  const daemon = (name: Daemon, program: string, args: ReadonlyArray<string>) => {
    const out = join(dir, "log", `${name}.out`)
    const child = spawn(program, [...args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    children.set(name, child)
    const chunks: Array<string> = []
    const keep = (d: Buffer) => {
      chunks.push(d.toString("utf8"))
      if (chunks.length > 200) chunks.shift()
    }
    child.stdout!.on("data", keep)
    child.stderr!.on("data", keep)
    child.on("exit", () => {
      try { writeFileSync(out, chunks.join("")) } catch { /* dir removed */ }
    })
    if (child.pid !== undefined) writeFileSync(join(dir, "pids", name), String(child.pid))
    return child
  }
  /** fails when the daemon exited, naming its output and log */
  const alive = (name: Daemon) => {
    const child = children.get(name)
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child?.exitCode ?? child?.signalCode}); ${tailOf(dir, name)}`)
    }
  }
  const checkAbort = () => {
    if (options.signal?.aborted === true) throw new Error("the RGW start was cancelled")
  }

  try {
    const [port, monV2, monV1] = await freePorts(3)
    const fsid = randomUUID()
    const monAddr = `[v2:127.0.0.1:${monV2},v1:127.0.0.1:${monV1}]`
    writeFileSync(conf, cephConf({ dir, fsid, monAddr, port, memstoreBytes: options.memstoreBytes ?? 2 * 1024 ** 3 }))
    const keyring = join(dir, "keyring")
    // a keyring is still read by mkfs even with auth none
    await run("ceph-authtool", ["--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"], dir)
    await run("ceph-authtool", [keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *"], dir)
    await run("monmaptool", ["--create", "--fsid", fsid, "--addv", "a", monAddr, join(dir, "monmap")], dir)
    await run("ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", join(dir, "monmap"), "--keyring", keyring], dir)
    checkAbort()
    daemon("mon", "ceph-mon", ["-c", conf, "-i", "a", "-f"])
    log(`ceph-rgw: mon up after ${seconds(t0)} s`)

    // the one python call: registers the OSD (waits for the mon to answer)
    const uuid = randomUUID()
    const id = (await run("ceph", ["-c", conf, "--connect-timeout", "60", "osd", "new", uuid], dir, 90_000)).trim()
    if (id !== "0") throw new Error(`ceph osd new gave id '${id}'`)
    alive("mon")
    await run("ceph-osd", ["-c", conf, "-i", "0", "--mkfs", "--osd-uuid", uuid], dir)
    checkAbort()
    daemon("osd", "ceph-osd", ["-c", conf, "-i", "0", "-f"])
    log(`ceph-rgw: osd started after ${seconds(t0)} s`)

    // radosgw creates its pools and waits for the OSD by itself; it answers HTTP once it is ready
    daemon("rgw", "radosgw", ["-c", conf, "-n", "client.rgw.a", "-f"])
    const endpoint = `http://127.0.0.1:${port}`
    for (let i = 0; ; i++) {
      checkAbort()
      for (const name of daemons) alive(name)
      if (await answers(endpoint)) break
      if (i > 600) throw new Error(`radosgw does not answer on ${endpoint} after 120 s; ${tailOf(dir, "rgw")}`)
      await sleep(200)
    }
    log(`ceph-rgw: radosgw answers after ${seconds(t0)} s`)

    const accessKey = `LO${randomBytes(8).toString("hex").toUpperCase()}`
    // hex: a base64url secret may start with "-", which a command line takes for a flag
    const secretKey = randomBytes(24).toString("hex")
    await run("radosgw-admin", [
      "-c", conf, "-n", "client.admin", "user", "create", "--uid=lo-migrate", "--display-name=lo-migrate",
      `--access-key=${accessKey}`, `--secret=${secretKey}`
    ], dir, 60_000)
    const version = (await run("radosgw", ["--version"], dir)).trim()
    options.signal?.removeEventListener("abort", onAbort)
    const startSeconds = Number(seconds(t0))
    log(`ceph-rgw: ${version.split(" (")[0]} ready on ${endpoint} in ${startSeconds} s (${dir})`)
    return { server: { endpoint, accessKey, secretKey, region: "us-east-1", dir, startSeconds, version }, stop }
  } catch (e) {
    const tails = existsSync(dir) ? daemons.map((d) => tailOf(dir, d)).join("\n") : ""
    await stop()
    throw new Error(`Ceph RGW did not start: ${e instanceof Error ? e.message : String(e)}${tails === "" ? "" : `\n${tails}`}`)
  }
}

const cephConf = (o: { dir: string; fsid: string; monAddr: string; port: number; memstoreBytes: number }) => `[global]
fsid = ${o.fsid}
mon initial members = a
mon host = ${o.monAddr}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
# radosgw defaults to ms_mon_client_mode = secure, impossible without cephx (-13 at send_auth_request)
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
auth allow insecure global id reclaim = true
mon warn on insecure global id reclaim allowed = false
keyring = ${o.dir}/keyring
run dir = ${o.dir}/run
admin socket = ${o.dir}/run/$name.asok
log file = ${o.dir}/log/$name.log
pid file = ${o.dir}/run/$name.pid
crash dir = ${o.dir}/crash
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
# modest memory and threads: 2 cores, shared with the tests
osd memory target = 939524096
osd memory base = 268435456
osd memory cache min = 134217728
mon memory target = 268435456
rocksdb cache size = 67108864
osd op num shards = 1
osd op num threads per shard = 2
ms async op threads = 2
debug ms = 0/0
err to stderr = true
log to stderr = false

[mon.a]
mon data = ${o.dir}/mon/ceph-a

[osd.0]
osd data = ${o.dir}/osd/ceph-0
osd objectstore = memstore
memstore device bytes = ${o.memstoreBytes}

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:${o.port}
rgw data = ${o.dir}/rgw
rgw thread pool size = 32
rgw enable usage log = false
rgw enable ops log = false
log file = ${o.dir}/log/rgw.log
`

const recordedPids = (dir: string, own: ReadonlyArray<ChildProcess>): ReadonlyArray<number> => {
  const mine = new Set(own.map((c) => c.pid))
  try {
    return readdirSync(join(dir, "pids")).map((f) => Number(readFileSync(join(dir, "pids", f), "utf8"))).filter((pid) =>
      Number.isInteger(pid) && pid > 0 && !mine.has(pid)
    )
  } catch {
    return []
  }
}

export interface ExtraRgw {
  readonly endpoint: string
  readonly stop: () => Promise<void>
}

/**
 * Another radosgw on the cluster in `dir` (same pools, users and buckets), on a free port, with extra
 * config options (e.g. `{ rgw_max_concurrent_requests: 2 }`: it answers 503 SlowDown past that). Its pid
 * is recorded, so the cluster's stop and watchdog end it too.
 */
export const startExtraRgw = async (dir: string, name: string, config: Readonly<Record<string, string | number>>): Promise<ExtraRgw> => {
  const [port] = await freePorts(1)
  const args = [
    "-c", join(dir, "ceph.conf"), "-n", `client.rgw.${name}`, "-f",
    `--rgw_frontends=beast endpoint=127.0.0.1:${port}`, `--rgw_data=${join(dir, "rgw")}`,
    ...Object.entries(config).map(([k, v]) => `--${k}=${v}`)
  ]
  const child = spawn("radosgw", args, { cwd: dir, stdio: "ignore" })
  if (child.pid !== undefined) writeFileSync(join(dir, "pids", `rgw-${name}`), String(child.pid))
  const endpoint = `http://127.0.0.1:${port}`
  const stop = async () => {
    await terminate(child)
    rmSync(join(dir, "pids", `rgw-${name}`), { force: true })
  }
  for (let i = 0; ; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`radosgw ${name} exited (${child.exitCode ?? child.signalCode})`)
    if (await answers(endpoint)) return { endpoint, stop }
    if (i > 300) {
      await stop()
      throw new Error(`radosgw ${name} does not answer on ${endpoint} after 60 s`)
    }
    await sleep(200)
  }
}

const seconds = (t0: number) => ((Date.now() - t0) / 1000).toFixed(1)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const run = (program: string, args: ReadonlyArray<string>, cwd: string, timeout = 30_000): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(program, [...args], { cwd, timeout, encoding: "utf8", maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout)
      else reject(new Error(`${program} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`.trim()))
    })
  })

/** any HTTP answer on / means beast is up */
const answers = (endpoint: string): Promise<boolean> =>
  new Promise((resolve) => {
    const req = Http.get(`${endpoint}/`, { timeout: 2000 }, (res) => {
      res.resume()
      resolve(true)
    })
    req.on("error", () => resolve(false))
    req.on("timeout", () => {
      req.destroy()
      resolve(false)
    })
  })

const terminate = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const timer = setTimeout(() => child.kill("SIGKILL"), 1500)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill("SIGTERM")
  })

const tailOf = (dir: string, name: Daemon): string => {
  const files = name === "rgw" ? ["log/rgw.out", "log/rgw.log"] : name === "osd" ? ["log/osd.out", "log/osd.0.log"] : ["log/mon.out", "log/mon.a.log"]
  return files.map((f) => {
    try {
      return `--- ${f} ---\n${readFileSync(join(dir, f), "utf8").split("\n").slice(-15).join("\n")}`
    } catch {
      return ""
    }
  }).filter((s) => s !== "").join("\n")
}

const freePorts = async (n: number): Promise<Array<number>> => {
  // held open together, so the ports differ
  const servers = await Promise.all(Array.from({ length: n }, () =>
    new Promise<Server>((resolve, reject) => {
      const srv = createServer()
      srv.once("error", reject)
      srv.listen(0, "127.0.0.1", () => resolve(srv))
    })))
  const ports = servers.map((s) => {
    const a = s.address()
    return typeof a === "object" && a !== null ? a.port : 0
  })
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
  return ports
}

// If the process that started the cluster dies without calling `stop` (SIGKILL, crash), the daemons
// would run on (they are not in its session's way of dying). This detached shell polls that process
// and then kills the daemons named in <dir>/pids and removes the dir; it exits by itself once `stop`
// has removed the dir. `removed` is the directory it removes: `dir` or a parent of it.
const startWatchdog = (dir: string, removed: string): number | undefined => {
  const script = [
    "while kill -0 \"$1\" 2>/dev/null && [ -d \"$2\" ]; do sleep 1; done",
    "if [ -d \"$2\" ]; then",
    "  for f in \"$2\"/pids/*; do [ -f \"$f\" ] && kill -9 \"$(cat \"$f\")\" 2>/dev/null; done",
    "  sleep 1",
    "  rm -rf \"$3\"",
    "fi"
  ].join("\n")
  const child = spawn("/bin/sh", ["-c", script, "lo-migrate-rgw-watchdog", String(process.pid), dir, removed], {
    detached: true,
    stdio: "ignore"
  })
  child.unref()
  return child.pid
}
