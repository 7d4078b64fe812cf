// The --config pre-parse step on its own: which settings of the file reach argv, given the command
// line and the environment (flag > environment > file > default), and what it refuses.
import { assert, describe, it } from "@effect/vitest"
import { Config, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as ConfigFile from "../src/ConfigFile.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const demo = Command.make("demo", {
  url: Flag.Redacted("url").pipe(Flag.withAlias("u"), Flag.withDescription("the url [env: DEMO_URL]"), Flag.withFallbackConfig(Config.Redacted("DEMO_URL"))),
  threads: Flag.Int("threads").pipe(Flag.withDescription("threads [default: 2]"), Flag.withDefault(2)),
  finalize: Flag.Boolean("finalize").pipe(Flag.withDefault(false)),
  tag: Flag.String("tag").pipe(Flag.optional)
})
const root = Command.make("tool").pipe(Command.withSubcommands([demo]))

const withFile = (settings: unknown) =>
  Effect.gen(function*() {
    const dir = yield* scopedTempDir("cfg-")
    const file = NodePath.join(dir, "c.json")
    NodeFs.writeFileSync(file, typeof settings === "string" ? settings : JSON.stringify(settings))
    return file
  })

describe("ConfigFile", () => {
  it.effect("lists a command's flags with their aliases and environment variables", () =>
    Effect.sync(() => {
      const flags = ConfigFile.flagsOf(demo)
      assert.deepStrictEqual(flags.map((f) => [f.name, f.aliases, f.env, f.boolean]), [
        ["url", ["u"], "DEMO_URL", false],
        ["threads", [], undefined, false],
        ["finalize", [], undefined, true],
        ["tag", [], undefined, false]
      ])
    }))

  it.effect("adds the file's settings after the subcommand; the command line and the environment win", () =>
    Effect.gen(function*() {
      const file = yield* withFile({ url: "postgres://x", threads: 7, finalize: true, tag: "-dash" })
      const all = yield* ConfigFile.apply(root, ["demo", "--config", file], {})
      assert.deepStrictEqual(all, ["demo", "--url=postgres://x", "--threads=7", "--finalize", "--tag=-dash", "--config", file])
      const flagWins = yield* ConfigFile.apply(root, ["demo", "-u", "postgres://y", "--threads=3", "--no-finalize", `--config=${file}`], {})
      assert.deepStrictEqual(flagWins.slice(0, 2), ["demo", "--tag=-dash"])
      const envWins = yield* ConfigFile.apply(root, ["demo", "--config", file], { DEMO_URL: "postgres://env" })
      assert.notInclude(envWins.join(" "), "--url=")
      // an empty variable counts as unset, as effect's ConfigProvider treats it
      const emptyEnv = yield* ConfigFile.apply(root, ["demo", "--config", file], { DEMO_URL: "" })
      assert.include(emptyEnv, "--url=postgres://x")
      const off = yield* ConfigFile.apply(root, ["demo", "--config", yield* withFile({ finalize: false })], {})
      assert.include(off, "--no-finalize")
    }))

  it.effect("leaves argv alone without --config, and reads none after --", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* ConfigFile.apply(root, ["demo", "--threads", "1"], {}), ["demo", "--threads", "1"])
      assert.deepStrictEqual(yield* ConfigFile.apply(root, ["demo", "--", "--config", "x"], {}), ["demo", "--", "--config", "x"])
    }))

  it.effect("refuses unknown keys, wrong kinds, missing files and invalid JSON, naming the file", () =>
    Effect.gen(function*() {
      const problem = (settings: unknown) =>
        Effect.gen(function*() {
          const file = yield* withFile(settings)
          const error = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", file], {}))
          assert.strictEqual(error._tag, "ConfigFileError")
          assert.strictEqual(error.file, file)
          return error.problem
        })
      assert.match(yield* problem({ thread: 1 }), /^unknown key "thread": demo accepts .*"threads"/)
      assert.match(yield* problem({ finalize: "yes" }), /"finalize" must be true or false/)
      assert.match(yield* problem({ threads: true }), /"threads" takes a value/)
      assert.match(yield* problem({ tag: { a: 1 } }), /"tag" must be a string, a number or a boolean/)
      assert.match(yield* problem("[1, 2]"), /must hold a JSON object/)
      assert.match(yield* problem("{ nope"), /is not valid JSON/)
      const missing = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", "/no/such/file.json"], {}))
      assert.strictEqual(missing.message, "config file /no/such/file.json: cannot be read (ENOENT)")
    }))
})
