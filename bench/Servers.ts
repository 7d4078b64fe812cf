/**
 * The servers a bench run measures against, both throwaway: a PostgreSQL cluster (the same setup as the
 * tests' globalSetup: own temp dir, free loopback port, fsync off, an ordinary app role) and s3rver in a
 * process of its own, started with --openssl-legacy-provider; for the latency case, a delaying proxy
 * in front of s3rver (DelayProxy.ts), in a process of its own too.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { PgTestServer } from "../test/support/context.ts"
import setupCluster from "../test/support/globalSetup.ts"

export interface Postgres {
  readonly server: PgTestServer
  readonly stop: () => Promise<void>
}

/** The tests' cluster logic, driven through the small part of vitest's TestProject it uses. */
export const startPostgres = async (): Promise<Postgres> => {
  let server: PgTestServer | undefined
  const project = { provide: (_key: string, value: PgTestServer) => (server = value) }
  const stop = await setupCluster(project as never)
  if (server === undefined) throw new Error("the cluster setup provided no server")
  return { server, stop: stop ?? (async () => undefined) }
}

export interface S3Server {
  readonly endpoint: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

const serverScript = fileURLToPath(new URL("./S3rverProcess.ts", import.meta.url))
const proxyScript = fileURLToPath(new URL("./DelayProxy.ts", import.meta.url))

/** Spawns a server script of the bench (`listening <port>` on stdout once ready); its port and a stop. */
const startProcess = async (nodeArgs: ReadonlyArray<string>, what: string) => {
  const child: ChildProcess = spawn(process.execPath, nodeArgs, { stdio: ["pipe", "pipe", "inherit"] })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const m = /listening (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once("exit", (code) => reject(new Error(`${what} exited with ${code} before listening`)))
  })
  const stop = async () => {
    if (child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once("exit", () => resolve())
        child.kill("SIGTERM")
      })
    }
  }
  return { port, pid: child.pid!, stop }
}

export const startS3rver = async (): Promise<S3Server> => {
  const directory = mkdtempSync(join(tmpdir(), "lo-migrate-bench-s3-"))
  const { port, pid, stop } = await startProcess(["--openssl-legacy-provider", serverScript, directory], "s3rver")
  return {
    endpoint: `http://127.0.0.1:${port}`,
    pid,
    stop: async () => {
      await stop()
      // gigabytes in tens of thousands of files: removed in the background, so the bench ends at once
      spawn("rm", ["-rf", directory], { detached: true, stdio: "ignore" }).unref()
    }
  }
}

/** The delaying proxy (DelayProxy.ts) in front of `upstream`, in its own process: `delayMs` added to every request. */
export const startDelayProxy = async (upstream: string, delayMs: number): Promise<S3Server> => {
  const { port, pid, stop } = await startProcess([proxyScript, upstream, String(delayMs)], "the delay proxy")
  return { endpoint: `http://127.0.0.1:${port}`, pid, stop }
}
