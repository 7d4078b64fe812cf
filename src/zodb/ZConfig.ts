/**
 * ZConfig's file syntax (the zope.conf / zodbconvert.conf language), as ZConfig's cfgparser.py and
 * substitution.py read it, into a tree of sections and keys with their file and line. No schema: which
 * sections and keys mean something is decided by the reader of the tree (ConvertConfig.ts).
 *
 * - One item a line, leading and trailing whitespace ignored; a line whose first character is `#` is a
 *   comment (a `#` later in a line is part of the value).
 * - `<type name>` opens a section (the name is optional), `</type>` closes it, `<type name/>` is an empty
 *   one. Types and names are case-insensitive (ZConfig lowercases them).
 * - `key value`: the value is the rest of the line; keys are case-insensitive and must look like
 *   `[a-zA-Z][-._a-zA-Z0-9]*` (ZConfig's basic-key). A key without a value has the empty value.
 * - `%define NAME value` (NAME case-insensitive, defined once), then `$NAME` or `${NAME}` in values and in
 *   directive arguments; `$(NAME)` is the environment variable NAME; `$$` is a literal `$`.
 * - `%include path`, relative to the including file, parses that file into the current section (sharing
 *   the definitions); `%import package` loads a schema component in ZConfig and is only recorded here.
 */
import { Data, Effect, Runtime } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

/** A config file that cannot be used: where (file, line) and what. Never quotes a value (they hold DSNs and keys). */
export class ZConfigError extends Data.TaggedError("ZConfigError")<{
  /** the file as given (the command line's path, or the %include's resolved path) */
  readonly file: string | undefined
  readonly line: number | undefined
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    if (this.file === undefined) return this.problem
    return `${this.file}${this.line === undefined ? "" : `:${this.line}`}: ${this.problem}`
  }
}

export interface Position {
  readonly file: string
  readonly line: number
}

export interface Key {
  /** lowercased */
  readonly name: string
  /** after substitution */
  readonly value: string
  readonly at: Position
}

export interface Section {
  /** lowercased; "" for the file's top level */
  readonly type: string
  /** lowercased, if given */
  readonly name: string | undefined
  readonly at: Position
  readonly keys: Array<Key>
  readonly sections: Array<Section>
}

export interface Document {
  readonly root: Section
  readonly imports: ReadonlyArray<{ readonly name: string; readonly at: Position }>
}

export interface ParseOptions {
  /** `$(NAME)` values; default process.env */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** reads a file (the %include'd ones); throws what `fileProblem` can describe. Default: node:fs (config files are small) */
  readonly readFile?: (path: string) => string
}

const namePart = String.raw`[^\s()]+`
const keyValueRx = new RegExp(String.raw`^(${namePart})\s*([^\s].*)?$`)
const sectionStartRx = new RegExp(String.raw`^(${namePart})(?:\s+(${namePart}))?$`)
const basicKeyRx = /^[a-zA-Z][-._a-zA-Z0-9]*$/
const substitutionNameRx = /^[a-zA-Z_][a-zA-Z0-9_]*/

const MAX_INCLUDE_DEPTH = 20

/** A substitution problem; the caller knows the line. */
class Failure {
  constructor(readonly problem: string) {}
}

/** ZConfig's substitute(): `$name`, `${name}`, `$(ENV)`, `$$`. */
const substitute = (
  text: string,
  defines: ReadonlyMap<string, string>,
  env: Readonly<Record<string, string | undefined>>
): string => {
  if (!text.includes("$")) return text
  let out = ""
  let rest = text
  while (rest !== "") {
    const i = rest.indexOf("$")
    if (i < 0) return out + rest
    out += rest.slice(0, i)
    const c = rest[i + 1]
    if (c === undefined) throw new Failure("a lone '$' at the end of a value (write $$ for a dollar sign)")
    if (c === "$") {
      out += "$"
      rest = rest.slice(i + 2)
      continue
    }
    let name: string
    let isEnv = false
    if (c === "{" || c === "(") {
      const close = c === "{" ? "}" : ")"
      const m = substitutionNameRx.exec(rest.slice(i + 2))
      if (m === null) throw new Failure(`'$${c}' not followed by a name`)
      name = m[0]
      if (rest[i + 2 + name.length] !== close) throw new Failure(`'$${c}${name}' not followed by '${close}'`)
      isEnv = c === "("
      rest = rest.slice(i + 3 + name.length)
    } else {
      const m = substitutionNameRx.exec(rest.slice(i + 1))
      if (m === null) throw new Failure("'$' not followed by '$' or a name (write $$ for a dollar sign)")
      name = m[0]
      rest = rest.slice(i + 1 + name.length)
    }
    const value = isEnv ? env[name] : defines.get(name.toLowerCase())
    if (value === undefined) {
      throw new Failure(isEnv ? `no environment variable ${name} for $(${name})` : `no %define for $${name}`)
    }
    out += value
  }
  return out
}

const defaultReadFile = (path: string): string => NodeFs.readFileSync(path, "utf8")

/** Why a file cannot be read, in words. */
export const fileProblem = (e: unknown): string => {
  const code = (e as { readonly code?: unknown }).code
  if (code === "ENOENT") return "no such file"
  if (code === "EACCES") return "permission denied"
  if (code === "EISDIR") return "is a directory, not a config file"
  return e instanceof Error ? e.message : String(e)
}

/** `parse`, throwing the ZConfigError. */
export const parseSync = (text: string, file: string, options: ParseOptions = {}): Document => {
  const env = options.env ?? process.env
  const readFile = options.readFile ?? defaultReadFile
  const defines = new Map<string, string>()
  const imports: Array<{ readonly name: string; readonly at: Position }> = []
  const root: Section = { type: "", name: undefined, at: { file, line: 0 }, keys: [], sections: [] }

  const parseText = (text: string, file: string, into: Section, includeStack: ReadonlyArray<string>): void => {
    const lines = text.split(/\r\n|\r|\n/)
    const stack: Array<Section> = []
    let section = into
    for (let n = 0; n < lines.length; n++) {
      const line = n + 1
      const at: Position = { file, line }
      const fail = (problem: string) => new ZConfigError({ file, line, problem })
      const sub = (value: string) => {
        try {
          return substitute(value, defines, env)
        } catch (e) {
          if (e instanceof Failure) throw fail(e.problem)
          throw e
        }
      }
      const item = lines[n]!.trim()
      if (item === "" || item.startsWith("#")) continue
      if (item.startsWith("</")) {
        if (!item.endsWith(">")) throw fail("malformed section end (missing '>')")
        const type = item.slice(2, -1).trimEnd().toLowerCase()
        const open = stack.pop()
        if (open === undefined) throw fail(`</${type}> closes no open section`)
        if (open.type !== type) throw fail(`</${type}> does not close <${open.type}> (opened at line ${open.at.line})`)
        section = stack.length === 0 ? into : stack[stack.length - 1]!
        continue
      }
      if (item.startsWith("<")) {
        if (!item.endsWith(">")) throw fail("malformed section start (missing '>')")
        let rest = item.slice(1, -1)
        const empty = rest.endsWith("/")
        if (empty) rest = rest.slice(0, -1)
        const m = sectionStartRx.exec(rest.trimEnd())
        if (m === null) throw fail("malformed section header (expected <type> or <type name>)")
        const child: Section = { type: m[1]!.toLowerCase(), name: m[2]?.toLowerCase(), at, keys: [], sections: [] }
        section.sections.push(child)
        if (!empty) {
          stack.push(child)
          section = child
        }
        continue
      }
      if (item.startsWith("%")) {
        const m = keyValueRx.exec(item.slice(1))
        if (m === null) throw fail("missing or unrecognized directive")
        const directive = m[1]!
        const arg = m[2]
        if (directive !== "define" && directive !== "import" && directive !== "include") {
          throw fail(`unknown directive %${directive} (ZConfig knows %define, %import and %include)`)
        }
        if (arg === undefined) throw fail(`%${directive} needs an argument`)
        if (directive === "define") {
          const rawName = arg.split(/\s/, 1)[0]!
          const name = rawName.toLowerCase()
          if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw fail(`%define ${rawName}: not a name that $ can substitute`)
          const value = sub(arg.slice(rawName.length).trim())
          const before = defines.get(name)
          if (before !== undefined && before !== value) throw fail(`%define ${rawName}: already defined with another value`)
          defines.set(name, value)
        } else if (directive === "import") {
          imports.push({ name: sub(arg.trim()), at })
        } else {
          const target = sub(arg.trim())
          const isFileUrl = target.toLowerCase().startsWith("file://")
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target) && !isFileUrl) throw fail("%include: only local files can be included")
          const local = isFileUrl ? decodeURIComponent(new URL(target).pathname) : target
          const path = NodePath.resolve(NodePath.dirname(file), local)
          if (includeStack.includes(path)) throw fail(`%include ${target} includes itself`)
          if (includeStack.length > MAX_INCLUDE_DEPTH) throw fail(`%include nested more than ${MAX_INCLUDE_DEPTH} deep`)
          let included: string
          try {
            included = readFile(path)
          } catch (e) {
            throw fail(`%include ${target}: ${path}: ${fileProblem(e)}`)
          }
          parseText(included, path, section, [...includeStack, path])
        }
        continue
      }
      const m = keyValueRx.exec(item)
      if (m === null) throw fail("malformed line (expected a key and its value, a <section>, or a %directive)")
      const key = m[1]!
      if (!basicKeyRx.test(key)) throw fail(`${JSON.stringify(key)} is not a valid key name`)
      section.keys.push({ name: key.toLowerCase(), value: m[2] === undefined ? "" : sub(m[2]), at })
    }
    const open = stack.pop()
    if (open !== undefined) throw new ZConfigError({ file, line: open.at.line, problem: `<${open.type}> is never closed` })
  }

  parseText(text, file, root, [NodePath.resolve(file)])
  return { root, imports }
}

const catchZConfig = (e: unknown) => {
  if (e instanceof ZConfigError) return e
  throw e
}

/** Parses `text` (the contents of `file`); `%include` paths are relative to `file`. */
export const parse = (text: string, file: string, options: ParseOptions = {}): Effect.Effect<Document, ZConfigError> =>
  Effect.try({ try: () => parseSync(text, file, options), catch: catchZConfig })

/** Reads and parses a config file. */
export const load = (file: string, options: ParseOptions = {}): Effect.Effect<Document, ZConfigError> =>
  Effect.try({
    try: () => {
      let text: string
      try {
        text = (options.readFile ?? defaultReadFile)(file)
      } catch (e) {
        throw new ZConfigError({ file, line: undefined, problem: fileProblem(e) })
      }
      return parseSync(text, file, options)
    },
    catch: catchZConfig
  })
