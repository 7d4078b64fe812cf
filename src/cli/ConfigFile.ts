/**
 * `--config FILE`: settings from a JSON object whose keys are a command's long flag names, e.g.
 * `{ "pg-url": "postgresql://…", "bucket": "ecap", "storer-threads": 8, "finalize": true }`.
 *
 * The hook is a pre-parse step in the CLI entry, before effect/cli sees argv: it finds the subcommand
 * and `--config`, reads the file, checks every key against that subcommand's flags, and appends
 * `--key=value` for each key that neither the command line nor the flag's environment variable sets.
 * effect/cli then parses and validates those values exactly like typed flags. That gives the
 * precedence flag > environment > file > default for every flag of every command, including flags
 * added later, with no change to their definitions. (`Flag.withFallbackConfig` alone could not do it:
 * it only runs for flags that declare a fallback, and it runs after the flag's default is known only
 * when declared in that order.) A flag's environment variable is the one its help names (`[env: X]`).
 *
 * The values stay in this process's memory (never in the OS argv), and secret flags (`Flag.Redacted`)
 * redact them as if typed.
 */
import { Effect } from "effect"
import type { Command } from "effect/cli"
import * as NodeFs from "node:fs/promises"
import { ConfigFileError, DatabaseUnavailable, SettingsError } from "../domain/Errors.ts"
import { closest } from "../domain/Closest.ts"

/** The global flag's name; declared on the root command so every command accepts it and --help lists it. */
export const flagName = "config"

/** Global flags (effect/cli built-ins) that a file may also set. */
const globalKeys = ["log-level"] as const

interface SingleLike {
  readonly _tag: "Single"
  readonly kind: string
  readonly name: string
  readonly aliases: ReadonlyArray<string>
  readonly description: { readonly _tag: "Some"; readonly value: string } | { readonly _tag: "None" }
  readonly primitiveType: { readonly _tag?: string }
}

interface ParamLike {
  readonly _tag: string
  readonly param?: ParamLike
}

/** One flag of a command: its long name, short aliases, environment variable, whether it is boolean. */
export interface FlagInfo {
  readonly name: string
  readonly aliases: ReadonlyArray<string>
  readonly env: string | undefined
  readonly boolean: boolean
}

const singlesOf = (param: ParamLike): ReadonlyArray<SingleLike> =>
  param._tag === "Single" ? [param as unknown as SingleLike] : param.param === undefined ? [] : singlesOf(param.param)

/** The flags a command declares (effect/cli keeps them on the command's internal `config`). */
export const flagsOf = (command: Command.Command.Any): ReadonlyArray<FlagInfo> => {
  const config = (command as unknown as { readonly config?: { readonly flags?: ReadonlyArray<ParamLike> } }).config
  return (config?.flags ?? []).flatMap(singlesOf).filter((s) => s.kind === "flag").map((s) => {
    const description = s.description._tag === "Some" ? s.description.value : ""
    return {
      name: s.name,
      aliases: s.aliases,
      env: /\[env: ([A-Za-z_][A-Za-z0-9_]*)\]/.exec(description)?.[1],
      boolean: s.primitiveType._tag === "Boolean"
    }
  })
}

const subcommandsOf = (command: Command.Command.Any): ReadonlyArray<Command.Command.Any> =>
  command.subcommands.flatMap((group) => group.commands)

/** The value of `--config FILE` / `--config=FILE` in argv (before `--`), if any. */
export const findConfigPath = (argv: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === "--") return undefined
    if (token === `--${flagName}`) return argv[i + 1]
    if (token.startsWith(`--${flagName}=`)) return token.slice(flagName.length + 3)
  }
  return undefined
}

/** Whether argv (before `--`) sets the flag by its name, its negation or an alias. */
const present = (argv: ReadonlyArray<string>, flag: { readonly name: string; readonly aliases: ReadonlyArray<string> }) => {
  const names = [flag.name, `no-${flag.name}`, ...flag.aliases]
  for (const token of argv) {
    if (token === "--") return false
    for (const n of names) {
      const dashed = n.length === 1 ? `-${n}` : `--${n}`
      if (token === dashed || token.startsWith(`${dashed}=`) || (n.length === 1 && token === `--${n}`)) return true
    }
  }
  return false
}

const fail = (file: string, problem: string, where: { readonly line?: number | undefined; readonly fix?: string | undefined } = {}) =>
  Effect.fail(new ConfigFileError({ file, problem, ...where }))

type JsonScalar = string | number | boolean

/** The argv tokens that set `flag` to `value`. */
const tokensFor = (file: string, flag: FlagInfo, value: unknown, line: number | undefined): Effect.Effect<ReadonlyArray<string>, ConfigFileError> => {
  const one = (v: unknown): Effect.Effect<string, ConfigFileError> => {
    if (typeof v === "boolean") {
      if (!flag.boolean) return fail(file, `"${flag.name}" takes a value, not ${v}`, { line, fix: `give it as a string or a number: "${flag.name}": "…"` })
      return Effect.succeed(v ? `--${flag.name}` : `--no-${flag.name}`)
    }
    if (flag.boolean) return fail(file, `"${flag.name}" must be true or false`, { line, fix: `write "${flag.name}": true (or false), without quotes` })
    if (typeof v === "number" && Number.isFinite(v)) return Effect.succeed(`--${flag.name}=${v}`)
    if (typeof v === "string") return Effect.succeed(`--${flag.name}=${v}`)
    return fail(file, `"${flag.name}" must be a string, a number or a boolean`, {
      line,
      fix: "a flag given more than once on the command line is a JSON array of those values; anything else is one value"
    })
  }
  return Array.isArray(value)
    ? Effect.forEach(value as ReadonlyArray<JsonScalar>, one)
    : Effect.map(one(value), (t) => [t])
}

/** Where a JSON text first breaks the grammar (RFC 8259): an offset, and what was expected there. */
export interface JsonSyntaxError {
  readonly offset: number
  /** what the grammar allows at `offset`, in words; never any of the text */
  readonly expected: string
}

/**
 * Finds the first syntax error of `text`, or undefined when it is valid JSON. JSON.parse decides
 * whether a file is valid; this only says where it is not, because V8's messages give no position for
 * some errors and quote the text around it for others. Iterative, so deep nesting cannot overflow.
 */
export const syntaxError = (text: string): JsonSyntaxError | undefined => {
  const n = text.length
  const stack: Array<"{" | "["> = []
  type State = "value" | "value-or-]" | "key" | "key-or-}" | "colon" | "after"
  let state = "value" as State
  let i = 0
  const error = (offset: number, expected: string): JsonSyntaxError => ({ offset, expected })
  const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9"
  const digits = (from: number): number => {
    let j = from
    while (isDigit(text[j])) j++
    return j
  }
  // returns the offset after the string, or the error inside it
  const string = (from: number): number | JsonSyntaxError => {
    let j = from + 1
    while (true) {
      if (j >= n) return error(j, "'\"' to close the string")
      const c = text.charCodeAt(j)
      if (c === 0x22) return j + 1
      if (c === 0x0a || c === 0x0d) return error(j, "'\"' to close the string before the end of the line")
      if (c < 0x20) return error(j, "an escape (e.g. \\t) instead of a control character inside a string")
      if (c === 0x5c) {
        const e = text[j + 1]
        if (e !== undefined && "\"\\/bfnrt".includes(e)) j += 2
        else if (e === "u") {
          for (let k = 0; k < 4; k++) {
            if (!/[0-9a-fA-F]/.test(text[j + 2 + k] ?? "")) return error(j + 2 + k, "4 hex digits after \\u")
          }
          j += 6
        } else return error(j + 1, "one of \" \\ / b f n r t u after a backslash")
      } else j++
    }
  }
  const number = (from: number): number | JsonSyntaxError => {
    let j = from
    if (text[j] === "-") j++
    if (text[j] === "0") j++
    else if (isDigit(text[j])) j = digits(j)
    else return error(j, "a digit")
    if (text[j] === ".") {
      if (!isDigit(text[j + 1])) return error(j + 1, "a digit after the decimal point")
      j = digits(j + 1)
    }
    if (text[j] === "e" || text[j] === "E") {
      j++
      if (text[j] === "+" || text[j] === "-") j++
      if (!isDigit(text[j])) return error(j, "a digit in the exponent")
      j = digits(j)
    }
    return j
  }
  while (true) {
    while (i < n && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++
    const c = text[i]
    const top = stack[stack.length - 1]
    if (state === "after") {
      if (top === undefined) return i >= n ? undefined : error(i, "the end of the file after the value")
      if (c === ",") {
        i++
        state = top === "{" ? "key" : "value"
      } else if (c === (top === "{" ? "}" : "]")) {
        stack.pop()
        i++
      } else return error(i, top === "{" ? "',' or '}'" : "',' or ']'")
    } else if (state === "colon") {
      if (c !== ":") return error(i, "':' after the property name")
      i++
      state = "value"
    } else if (state === "key" || state === "key-or-}") {
      if (state === "key-or-}" && c === "}") {
        stack.pop()
        i++
        state = "after"
      } else if (c === "\"") {
        const end = string(i)
        if (typeof end !== "number") return end
        i = end
        state = "colon"
      } else return error(i, state === "key" ? "a property name in double quotes" : "a property name in double quotes or '}'")
    } else if (state === "value-or-]" && c === "]") {
      stack.pop()
      i++
      state = "after"
    } else if (c === "{" || c === "[") {
      stack.push(c)
      i++
      state = c === "{" ? "key-or-}" : "value-or-]"
    } else if (c === "\"" || c === "-" || isDigit(c)) {
      const end = c === "\"" ? string(i) : number(i)
      if (typeof end !== "number") return end
      i = end
      state = "after"
    } else {
      const literal = ["true", "false", "null"].find((l) => l[0] === c)
      if (literal === undefined) return error(i, "a value (a string, number, object, array, true, false or null)")
      for (let k = 0; k < literal.length; k++) if (text[i + k] !== literal[k]) return error(i + k, literal)
      i += literal.length
      state = "after"
    }
  }
}

/** 1-based line and column (in characters) of `offset`; CRLF, LF and a lone CR each end a line. */
export const lineAndColumn = (text: string, offset: number): { readonly line: number; readonly column: number } => {
  let line = 1
  let start = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    const c = text[i]
    if (c === "\n" || (c === "\r" && text[i + 1] !== "\n")) {
      line++
      start = i + 1
    }
  }
  // code points, so a character outside the BMP (an emoji) counts once, as editors show it
  return { line, column: [...text.slice(start, offset)].length + 1 }
}

/** Why `text` is not JSON, by line and column: never quoting it (a config file may hold secrets). */
const describeSyntaxError = (text: string): string => {
  const found = syntaxError(text)
  if (found === undefined) return "is not valid JSON"
  const { line, column } = lineAndColumn(text, found.offset)
  const end = found.offset >= text.length ? "the file ends; " : ""
  return `is not valid JSON at line ${line}, column ${column} (${end}expected ${found.expected})`
}

/** The 1-based line of a top-level `"key":` in the file's text, if it can be found (for messages). */
export const lineOfKey = (text: string, key: string): number | undefined => {
  const at = new RegExp(`${JSON.stringify(key).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*:`).exec(text)
  return at === null ? undefined : lineAndColumn(text, at.index).line
}

/** The known key closest to `key` (underscores read as hyphens), if it is close enough to be a typo. */
export const closestKey = (key: string, known: ReadonlyArray<string>): string | undefined =>
  closest(key, known, { normalize: (k) => k.toLowerCase().replaceAll("_", "-").replace(/^-+/, ""), least: 1 })

/** Reads and parses the file: a JSON object, or a ConfigFileError that names the file. */
export const read = (file: string): Effect.Effect<Readonly<Record<string, unknown>>, ConfigFileError> =>
  Effect.map(readText(file), ({ settings }) => settings)

const readText = (file: string): Effect.Effect<{ readonly text: string; readonly settings: Readonly<Record<string, unknown>> }, ConfigFileError> =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => NodeFs.readFile(file, "utf8"),
      catch: (cause) =>
        new ConfigFileError({ file, problem: `cannot be read (${(cause as { code?: string }).code ?? String(cause)})` })
    })
    // a leading byte order mark (some Windows editors write one) is not part of the JSON
    const json = text.startsWith("\uFEFF") ? text.slice(1) : text
    let parsed: unknown
    try {
      parsed = JSON.parse(json)
    } catch {
      // never the parser's message: it quotes the text around the error, which may be a secret
      return yield* fail(file, describeSyntaxError(json))
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return yield* fail(file, "must hold a JSON object whose keys are long flag names", {
        fix: `write the settings as { "pg-url": "…", "bucket": "…" } (docs/configuration.md)`
      })
    }
    return { text: json, settings: parsed as Record<string, unknown> }
  })

/**
 * Where a flag's value came from when not from the command line: its environment variable, or the
 * --config file and the key's line. Undefined: the command line, a default, or not given.
 */
export type Origins = (flag: string) => string | undefined

/**
 * `error` with the origin of its setting, when that is a flag whose value came from elsewhere: a bad
 * setting, or a server that its flag (e.g. --pg-url from LO_MIGRATE_PG_URL) does not reach.
 */
export const locate = (origins: Origins) => <E>(error: E): E => {
  const originOf = (setting: string | undefined) =>
    setting === undefined || !setting.startsWith("--") ? undefined : origins(setting.slice(2).split(/[\s=]/)[0]!)
  if (error instanceof SettingsError && error.from === undefined) {
    const from = originOf(error.setting)
    return from === undefined
      ? error
      : new SettingsError({ setting: error.setting, problem: error.problem, fix: error.fix, from }) as E
  }
  if (error instanceof DatabaseUnavailable) {
    const from = originOf(error.setting)
    return from === undefined
      ? error
      : new DatabaseUnavailable({ problem: error.problem, fix: error.fix, setting: `${error.setting} from ${from}` }) as E
  }
  return error
}

/** The environment variable of `flag` of `command`, if its help names one. */
export const envOf = (command: Command.Command.Any, flag: string): string | undefined =>
  flagsOf(command).find((f) => f.name === flag)?.env

/** The subcommand of `root` that argv (before `--`) names, if any. */
export const commandOf = (root: Command.Command.Any, argv: ReadonlyArray<string>): Command.Command.Any | undefined => {
  const end = argv.indexOf("--") === -1 ? argv.length : argv.indexOf("--")
  const first = argv.slice(0, end).find((token) => subcommandsOf(root).some((c) => c.name === token))
  return subcommandsOf(root).find((c) => c.name === first)
}

/** The origins of the flags of `command` (its argv after the command's name) when no file applies. */
export const originsOf = (
  command: Command.Command.Any,
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
  fromFile: ReadonlyMap<string, string> = new Map()
): Origins => {
  const flags = new Map(flagsOf(command).map((f) => [f.name, f]))
  return (name) => {
    const flag = flags.get(name)
    if (flag === undefined || present(argv, flag)) return undefined
    if (flag.env !== undefined && (env[flag.env] ?? "") !== "") return flag.env
    return fromFile.get(name)
  }
}

/**
 * Returns argv with the file's settings added for the flags that the command line and the environment
 * leave unset. Without `--config`, or without a subcommand to apply it to, argv comes back unchanged.
 */
export const apply = (
  root: Command.Command.Any,
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<ReadonlyArray<string>, ConfigFileError> => Effect.map(applyWithOrigins(root, argv, env), (r) => r.argv)

/** `apply`, and where each flag's value came from (for messages: `locate`). */
export const applyWithOrigins = (
  root: Command.Command.Any,
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>
): Effect.Effect<{ readonly argv: ReadonlyArray<string>; readonly origins: Origins }, ConfigFileError> =>
  Effect.gen(function*() {
    const end = argv.indexOf("--") === -1 ? argv.length : argv.indexOf("--")
    const at = argv.findIndex((token, i) => i < end && subcommandsOf(root).some((c) => c.name === token))
    const command = at === -1 ? undefined : subcommandsOf(root).find((c) => c.name === argv[at])!
    const none: Origins = () => undefined
    const file = findConfigPath(argv)
    if (file === undefined) {
      if (argv.slice(0, end).includes(`--${flagName}`)) {
        return yield* fail("(none)", `--${flagName} needs a file name`, { fix: `give it as --${flagName} FILE.json` })
      }
      return { argv, origins: command === undefined ? none : originsOf(command, argv.slice(at + 1), env) }
    }
    const { settings, text } = yield* readText(file)
    if (command === undefined) return { argv, origins: none }
    const flags = new Map(flagsOf(command).map((f) => [f.name, f]))
    for (const key of globalKeys) flags.set(key, { name: key, aliases: [], env: undefined, boolean: false })
    flags.delete(flagName)
    const added: Array<string> = []
    const fromFile = new Map<string, string>()
    for (const [key, value] of Object.entries(settings)) {
      const flag = flags.get(key)
      const line = lineOfKey(text, key)
      if (flag === undefined) {
        const known = [...flags.keys()].sort()
        const near = closestKey(key, known)
        return yield* fail(file, `unknown key "${key}"`, {
          line,
          fix: near === undefined
            ? `${command.name} accepts ${known.map((k) => `"${k}"`).join(", ")}`
            : `did you mean "${near}"? (${command.name} --help lists every flag; the keys are their long names)`
        })
      }
      const tokens = yield* tokensFor(file, flag, value, line)
      if (present(argv, flag)) continue
      if (flag.env !== undefined && (env[flag.env] ?? "") !== "") continue
      added.push(...tokens)
      fromFile.set(key, `${file}${line === undefined ? "" : `:${line}`}`)
    }
    return {
      argv: [...argv.slice(0, at + 1), ...added, ...argv.slice(at + 1)],
      origins: originsOf(command, argv.slice(at + 1), env, fromFile)
    }
  })
