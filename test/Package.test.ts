// `npm pack` yields a working package: the bin, the library and its types, and nothing else. The
// tarball is unpacked into a temp dir's node_modules (its dependencies linked from this install, as
// `npm install` would place them) and used from there.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const npm = process.platform === "win32" ? "npm.cmd" : "npm"

describe("npm pack", () => {
  it.live("contains dist, README and package.json; the bin, import and types work from an install", () =>
    Effect.acquireUseRelease(
      Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-pack-"))),
      (dir) =>
        Effect.sync(() => {
          const packed = JSON.parse(
            execFileSync(npm, ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: root, encoding: "utf8" })
          ) as ReadonlyArray<{ filename: string; files: ReadonlyArray<{ path: string }> }>
          const files = packed[0]!.files.map((f) => f.path)
          for (const f of ["package.json", "README.md", "dist/cli/bin.js", "dist/index.js", "dist/index.d.ts", "dist/cli/demo.js"]) {
            assert.include(files, f)
          }
          assert.isTrue(files.every((f) => f === "package.json" || f === "README.md" || f.startsWith("dist/")), files.join(" "))
          assert.isFalse(files.some((f) => f.startsWith("test/") || f.startsWith("node_modules/")))

          // unpack as node_modules/lo-migrate; every other package comes from this repository's install
          const modules = NodePath.join(dir, "app", "node_modules")
          NodeFs.mkdirSync(NodePath.join(modules, "lo-migrate"), { recursive: true })
          execFileSync("tar", ["-xzf", NodePath.join(dir, packed[0]!.filename), "-C", NodePath.join(modules, "lo-migrate"), "--strip-components=1"])
          const shared = NodeFs.realpathSync(NodePath.join(root, "node_modules"))
          for (const name of NodeFs.readdirSync(shared)) {
            if (name === "lo-migrate" || name === ".bin") continue
            NodeFs.symlinkSync(NodePath.join(shared, name), NodePath.join(modules, name))
          }
          const app = NodePath.join(dir, "app")
          const bin = NodePath.join(modules, "lo-migrate", "dist", "cli", "bin.js")
          assert.match(NodeFs.readFileSync(bin, "utf8"), /^#!\/usr\/bin\/env node\n/)
          assert.match(execFileSync(process.execPath, [bin, "--version"], { cwd: app, encoding: "utf8" }), /0\.1\.0/)
          const help = execFileSync(process.execPath, [bin, "--help"], { cwd: app, encoding: "utf8" })
          assert.include(help, "migrate")
          assert.include(help, "demo")
          // shell completions (effect/cli's global --completions) know the subcommands
          const completions = execFileSync(process.execPath, [bin, "--completions", "bash"], { cwd: app, encoding: "utf8" })
          assert.include(completions, "lo-migrate")
          assert.include(completions, "demo")
          assert.include(completions, "--metrics-port")

          NodeFs.writeFileSync(NodePath.join(app, "package.json"), JSON.stringify({ name: "app", type: "module", private: true }))
          const imported = execFileSync(process.execPath, [
            "--input-type=module",
            "-e",
            "import { Migration, Stats, S3Store, Events } from 'lo-migrate'; " +
              "console.log(typeof Migration.layer, typeof Stats.layer, typeof S3Store.layer, typeof Events.toJson)"
          ], { cwd: app, encoding: "utf8" })
          assert.strictEqual(imported.trim(), "function object function function")

          // a consumer type-checks against the shipped .d.ts
          NodeFs.writeFileSync(NodePath.join(app, "main.ts"), [
            `import { Effect } from "effect"`,
            `import { Migration, type Summary } from "lo-migrate"`,
            `const program: Effect.Effect<Summary, unknown, never> = Effect.flatMap(Migration, (m) => m.run).pipe(`,
            `  Effect.provide(Migration.layer({ pgUrl: "postgres://u:p@127.0.0.1/db", bucket: "my-bucket", storerThreads: 8 })))`,
            `export default program`,
            ""
          ].join("\n"))
          NodeFs.writeFileSync(NodePath.join(app, "tsconfig.json"), JSON.stringify({
            compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, skipLibCheck: true, types: ["node"] },
            files: ["main.ts"]
          }))
          execFileSync(process.execPath, [NodePath.join(shared, "typescript", "bin", "tsc"), "-p", "tsconfig.json"], { cwd: app, encoding: "utf8" })
        }),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    ))
})
