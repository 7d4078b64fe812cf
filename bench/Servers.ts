/**
 * The servers a bench run measures against, both throwaway: a PostgreSQL cluster (the same setup as the
 * tests' globalSetup: own temp dir, free loopback port, fsync off, an ordinary app role) and s3rver in a
 * process of its own, started with --openssl-legacy-provider.
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

export const startS3rver = async (): Promise<S3Server> => {
  const directory = mkdtempSync(join(tmpdir(), "lo-migrate-bench-s3-"))
  const child: ChildProcess = spawn(process.execPath, ["--openssl-legacy-provider", serverScript, directory], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const m = /listening (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once("exit", (code) => reject(new Error(`s3rver exited with ${code} before listening`)))
  })
  return {
    endpoint: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve())
          child.kill("SIGTERM")
        })
      }
      // gigabytes in tens of thousands of files: removed in the background, so the bench ends at once
      spawn("rm", ["-rf", directory], { detached: true, stdio: "ignore" }).unref()
    }
  }
}
