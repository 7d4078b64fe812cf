// A --config file that cannot be used is refused with exit 2 by the executable, naming the file (and for
// invalid JSON the line and column), never showing any piece of it: such a file holds secrets. The JSON
// parser's own message quotes the text around the error, so it must never reach the output.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { scopedTempDir } from "./support/TempDir.ts"

// the AWS documentation's example secret key: long enough that any leaked piece of it is found
const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"

/** every piece of five or more characters of the secret in `text` (the file's path taken out) */
const leaks = (text: string, file: string) => {
  const shown = text.replaceAll(file, "FILE")
  const found: Array<string> = []
  for (let i = 0; i + 5 <= secret.length; i++) if (shown.includes(secret.slice(i, i + 5))) found.push(secret.slice(i, i + 5))
  return found
}

/** Runs `migrate --config FILE` with `text` as FILE; the refusal must be exit 2 and show no piece of the secret. */
const refused = (text: string) =>
  Effect.gen(function*() {
    const dir = yield* scopedTempDir("config-")
    const file = NodePath.join(dir, "lo-migrate.json")
    NodeFs.writeFileSync(file, text, { mode: 0o600 })
    const result = yield* runCli(["migrate", "--config", file])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.deepStrictEqual(leaks(result.stdout + result.stderr, file), [], result.stderr)
    return { file, stderr: result.stderr }
  })

// settings that make the rest of the file valid, so the refusal is about the secret's line
const head = `{\n  "pg-url": "postgresql://lo@127.0.0.1:1/db",\n  "bucket": "ecap",\n`
const line4 = '  "secret-key": "' // the secret's value starts in column 18 of line 4

describe("--config FILE that cannot be used", () => {
  it.live("invalid JSON: exit 2, the file, line and column named, no piece of the file shown", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, string]> = [
        // the secret in single quotes, and without quotes: V8's message quotes the text around them
        [`${head}  "secret-key": '${secret}'\n}\n`, "line 4, column 17 (expected a value (a string, number, object, array, true, false or null))"],
        [`${head}  "secret-key": ${secret}\n}\n`, "line 4, column 17 (expected a value (a string, number, object, array, true, false or null))"],
        // trailing comma
        [`${head}${line4}${secret}",\n}\n`, "line 5, column 1 (expected a property name in double quotes)"],
        // missing closing quote
        [`${head}${line4}${secret},\n  "region": "eu"\n}\n`,
          `line 4, column ${line4.length + secret.length + 2} (expected '"' to close the string before the end of the line)`],
        // truncated file
        [`${head}${line4}${secret}"`, `line 4, column ${line4.length + secret.length + 2} (the file ends; expected ',' or '}')`],
        [`${head}${line4}${secret.slice(0, 20)}`, `line 4, column ${line4.length + 21} (the file ends; expected '"' to close the string)`],
        // a secret with a stray quote
        [`${head}${line4}${secret.slice(0, 8)}"${secret.slice(8)}"\n}\n`, `line 4, column ${line4.length + 10} (expected ',' or '}')`]
      ]
      for (const [text, where] of cases) {
        const { file, stderr } = yield* refused(text)
        assert.include(stderr, `config file ${file}: is not valid JSON at ${where}`)
      }
    }))

  it.live("an unknown key or a value of the wrong kind: exit 2, the key named, never the secret's value", () =>
    Effect.gen(function*() {
      const settings = (extra: Record<string, unknown>) =>
        JSON.stringify({ "pg-url": "postgresql://lo@127.0.0.1:1/db", bucket: "ecap", ...extra }, null, 2)
      const unknown = yield* refused(settings({ secret_key: secret }))
      // the key's line, and the flag it is a typo of
      assert.include(unknown.stderr, `config file ${unknown.file}:4: unknown key "secret_key"\n  help: did you mean "secret-key"?`)
      const flag = yield* refused(settings({ "secret-key": true }))
      assert.include(flag.stderr, `config file ${flag.file}:4: "secret-key" takes a value, not true`)
      const object = yield* refused(settings({ "secret-key": { value: secret } }))
      assert.include(object.stderr, `"secret-key" must be a string, a number or a boolean`)
      const nested = yield* refused(settings({ "access-key": [secret, [secret]] }))
      assert.include(nested.stderr, `"access-key" must be a string, a number or a boolean`)
      // refused by effect/cli once the file's values are flags
      const twice = yield* refused(settings({ "secret-key": [secret, secret] }))
      assert.include(twice.stderr, "--secret-key")
      const url = yield* refused(settings({ "pg-url": `postgresql://lo:${secret}@127.0.0.1:notaport/db` }))
      assert.include(url.stderr, "--pg-url")
    }))

  it.live("a value the command refuses says it came from the file, and from which line; one from the environment names the variable", () =>
    Effect.gen(function*() {
      const text = `{\n  "pg-url": "postgresql://lo@127.0.0.1:1/db",\n  "bucket": "ecap",\n  "storer-threads": 0\n}\n`
      const low = yield* refused(text)
      assert.include(low.stderr, `lo-migrate: invalid setting --storer-threads (from ${low.file}:4): 0 is below the minimum of 1`)
      // refused by effect/cli (not a number): its error, then where the value came from
      const word = yield* refused(text.replace(": 0", `: "many"`))
      assert.include(word.stderr, "--storer-threads")
      assert.include(word.stderr, `lo-migrate: the value of --storer-threads came from ${word.file}:4`)
      const env = yield* runCli(["migrate", "--pg-url", "postgresql://lo@127.0.0.1:1/db"], { env: { LO_MIGRATE_BUCKET: "Not_A_Bucket" } })
      assert.strictEqual(env.code, 2, env.stderr)
      assert.include(env.stderr, `invalid setting --bucket (from LO_MIGRATE_BUCKET): "Not_A_Bucket" is not a valid bucket name`)
    }))
})
