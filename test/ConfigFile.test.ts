// The --config pre-parse step on its own: which settings of the file reach argv, given the command
// line and the environment (flag > environment > file > default), and what it refuses.
import { assert, describe, it } from "@effect/vitest"
import { Config, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import * as fc from "fast-check"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as ConfigFile from "../src/cli/ConfigFile.ts"
import { SettingsError } from "../src/domain/Errors.ts"
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
      const refusal = (settings: unknown) =>
        Effect.gen(function*() {
          const file = yield* withFile(settings)
          const error = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", file], {}))
          assert.strictEqual(error._tag, "ConfigFileError")
          assert.strictEqual(error.file, file)
          return error
        })
      const problem = (settings: unknown) => Effect.map(refusal(settings), (e) => e.problem)
      // a typo: the key's line and the closest flag; no near one: every key the command accepts
      const typo = yield* refusal({ threads: 1, thread: 1 })
      assert.strictEqual(typo.problem, `unknown key "thread"`)
      assert.strictEqual(typo.line, 1)
      assert.match(typo.fix!, /^did you mean "threads"\?/)
      assert.match(typo.message, /^config file .*:1: unknown key "thread"\n  help: did you mean "threads"\?/)
      const far = yield* refusal({ colour: "red" })
      assert.match(far.fix!, /^demo accepts .*"threads"/)
      assert.match(yield* problem({ finalize: "yes" }), /"finalize" must be true or false/)
      assert.match(yield* problem({ threads: true }), /"threads" takes a value/)
      assert.match(yield* problem({ tag: { a: 1 } }), /"tag" must be a string, a number or a boolean/)
      assert.match(yield* problem("[1, 2]"), /must hold a JSON object/)
      assert.match(yield* problem("{ nope"), /is not valid JSON/)
      const missing = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", "/no/such/file.json"], {}))
      assert.strictEqual(missing.message, "config file /no/such/file.json: cannot be read (ENOENT)")
    }))

  it.effect("a bad setting says where its value came from: the environment variable, or the file and the key's line", () =>
    Effect.gen(function*() {
      const file = yield* withFile(`{\n  "tag": "x",\n  "threads": 0\n}\n`)
      const { origins } = yield* ConfigFile.applyWithOrigins(root, ["demo", "--config", file], { DEMO_URL: "postgres://env" })
      assert.strictEqual(origins("threads"), `${file}:3`)
      assert.strictEqual(origins("url"), "DEMO_URL")
      assert.strictEqual(origins("finalize"), undefined) // a default
      const given = yield* ConfigFile.applyWithOrigins(root, ["demo", "--threads", "0", "--config", file], {})
      assert.strictEqual(given.origins("threads"), undefined) // the command line: nothing to add
      const located = ConfigFile.locate(origins)(new SettingsError({ setting: "--threads", problem: "0 is below the minimum of 1" }))
      assert.strictEqual(located.message, `invalid setting --threads (from ${file}:3): 0 is below the minimum of 1`)
      // without --config, the environment still counts
      const envOnly = yield* ConfigFile.applyWithOrigins(root, ["demo"], { DEMO_URL: "x" })
      assert.strictEqual(envOnly.origins("url"), "DEMO_URL")
    }))

  // the AWS documentation's example secret key: long enough that any leaked piece of it is found
  const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
  /** every piece of five or more characters of the secret found in `text` */
  const leaks = (text: string) => {
    const found: Array<string> = []
    for (let i = 0; i + 5 <= secret.length; i++) if (text.includes(secret.slice(i, i + 5))) found.push(secret.slice(i, i + 5))
    return found
  }
  const parses = (text: string) => {
    try {
      JSON.parse(text)
      return true
    } catch {
      return false
    }
  }
  const line2 = '  "secret-key": "' // the secret's value starts in column 18 of line 2

  it.effect("invalid JSON is named by line and column and what was expected, never by a piece of the file", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["trailing comma", `{\n${line2}${secret}",\n}\n`, "at line 3, column 1 (expected a property name in double quotes)"],
        ["missing closing quote", `{\n${line2}${secret},\n  "bucket": "b"\n}`,
          `at line 2, column ${line2.length + secret.length + 2} (expected '"' to close the string before the end of the line)`],
        ["single quotes", `{\n  "secret-key": '${secret}'\n}`,
          "at line 2, column 17 (expected a value (a string, number, object, array, true, false or null))"],
        ["missing opening quote", `{\n  "secret-key": ${secret}"\n}`,
          "at line 2, column 17 (expected a value (a string, number, object, array, true, false or null))"],
        ["truncated after the secret", `{\n${line2}${secret}"`, `at line 2, column ${line2.length + secret.length + 2} (the file ends; expected ',' or '}')`],
        ["truncated inside the secret", `{\n${line2}${secret.slice(0, 12)}`, `at line 2, column ${line2.length + 13} (the file ends; expected '"' to close the string)`],
        ["a stray quote in the secret", `{\n${line2}${secret.slice(0, 8)}"${secret.slice(8)}"\n}`, `at line 2, column ${line2.length + 10} (expected ',' or '}')`],
        ["a bad escape in the secret", `{\r\n${line2}${secret.slice(0, 8)}\\q${secret.slice(8)}"\r\n}`,
          `at line 2, column ${line2.length + 10} (expected one of " \\ / b f n r t u after a backslash)`],
        ["a second value after the object", `{"secret-key": "${secret}"} {"bucket": "b"}`, `at line 1, column ${secret.length + 20} (expected the end of the file after the value)`],
        ["empty", "", "at line 1, column 1 (the file ends; expected a value (a string, number, object, array, true, false or null))"]
      ]
      for (const [name, text, where] of cases) {
        assert.isFalse(parses(text), name)
        const problem = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", yield* withFile(text)], {})).pipe(
          Effect.map((e) => e.problem)
        )
        assert.strictEqual(problem, `is not valid JSON ${where}`, name)
        assert.deepStrictEqual(leaks(problem), [], name)
      }
      // a byte order mark is no error, and no column
      const bom = yield* ConfigFile.apply(root, ["demo", "--config", yield* withFile(`\uFEFF{"threads": 4}`)], {})
      assert.include(bom, "--threads=4")
    }))

  it.effect("the other refusals name the key, never the value of a secret", () =>
    Effect.gen(function*() {
      // (an array for a single-valued flag passes here: effect/cli refuses it, see ConfigFileErrors.test.ts)
      for (const settings of [{ url: { [secret]: secret } }, { url: true, threads: secret }, { [`${secret}x`]: 1 }]) {
        const file = yield* withFile(settings)
        const error = yield* Effect.flip(ConfigFile.apply(root, ["demo", "--config", file], {}))
        // the unknown key case names the key, which here is made of the secret: only values must not show
        const shown = Object.keys(settings)[0]!.startsWith(secret) ? error.problem.replace(`${secret}x`, "KEY") : error.problem
        assert.deepStrictEqual(leaks(shown), [], JSON.stringify(settings))
      }
    }))

  it("the syntax scanner agrees with JSON.parse, and its position lies within the text", () => {
    const pieces = ["{", "}", "[", "]", ",", ":", " ", "\n", "\r", "\t", '"', '"a"', '"\\u00e9"', "\\", "\\q", "1", "0", "-", ".", "e", "+", "2.5e-3", "true", "tru", "null", "false", "x", "\u00e4"]
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 30 }), (parts) => {
        const text = parts.join("")
        const valid = parses(text)
        const found = ConfigFile.syntaxError(text)
        if (valid) return found === undefined
        return found !== undefined && found.offset >= 0 && found.offset <= text.length
      }),
      { numRuns: 5000 }
    )
    // valid JSON of any shape passes, nested deeper than any call stack too
    fc.assert(fc.property(fc.json(), (text) => ConfigFile.syntaxError(text) === undefined), { numRuns: 500 })
    assert.isUndefined(ConfigFile.syntaxError(`${"[".repeat(200_000)}${"]".repeat(200_000)}`))
  })
})
