// Every error that ends a command with an exit code is in docs/exit-codes.md, in the table of its code:
// the list comes from the code (every class of src/ that sets Runtime.errorExitCode, instantiated to read
// the code it maps to), so a new error cannot be added without documenting it, nor a row outlive its class.
import { assert, describe, it } from "@effect/vitest"
import { Runtime } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const src = NodePath.join(root, "src")
const page = NodePath.join(root, "docs", "exit-codes.md")

/** The modules of src/ that declare an exit code (the executables' entry points run the process: not imported). */
const modulesWithExitCodes = (): ReadonlyArray<{ readonly file: string; readonly declared: number }> =>
  (NodeFs.readdirSync(src, { recursive: true }) as Array<string>)
    .filter((f) => f.endsWith(".ts") && !f.endsWith("Bin.ts") && !f.endsWith(`cli${NodePath.sep}bin.ts`))
    .map((f) => NodePath.join(src, f))
    .map((file) => ({ file, declared: (NodeFs.readFileSync(file, "utf8").match(/\[Runtime\.errorExitCode\]\s*=/g) ?? []).length }))
    .filter((m) => m.declared > 0)

interface Found {
  readonly tag: string
  readonly code: number
  readonly file: string
}

/** Every exported error class of those modules, with the exit code an instance of it carries. */
const errorClasses = async (): Promise<ReadonlyArray<Found>> => {
  const found: Array<Found> = []
  for (const { declared, file } of modulesWithExitCodes()) {
    const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>
    let here = 0
    for (const value of Object.values(module)) {
      if (typeof value !== "function" || !(value.prototype instanceof Error)) continue
      const instance = new (value as new(args: object) => Error & { readonly _tag?: string })({})
      const code = (instance as unknown as Record<string, unknown>)[Runtime.errorExitCode]
      if (typeof code !== "number") continue
      here++
      found.push({ tag: instance._tag ?? value.name, code, file: NodePath.relative(root, file) })
    }
    // a class that sets an exit code but is not exported would escape the inventory
    assert.strictEqual(here, declared, `${NodePath.relative(root, file)}: ${declared} exit code(s) declared, ${here} exported class(es) carry one`)
  }
  return found
}

/** The first column (`Tag`) of the table under each `## Exit N` heading of the page. */
const documented = (): ReadonlyMap<number, ReadonlyArray<string>> => {
  const tables = new Map<number, Array<string>>()
  let code: number | undefined
  for (const line of NodeFs.readFileSync(page, "utf8").split("\n")) {
    const heading = /^##\s+Exit (\d+)\b/.exec(line)
    if (heading !== null) {
      code = Number(heading[1])
      continue
    }
    if (/^#/.test(line)) code = undefined
    const row = /^\|\s*`([A-Za-z]+)`\s*\|/.exec(line)
    if (code !== undefined && row !== null) tables.set(code, [...(tables.get(code) ?? []), row[1]!])
  }
  return tables
}

describe("docs/exit-codes.md", () => {
  it("lists every error class in the table of its exit code, and no other", async () => {
    const classes = await errorClasses()
    const tables = documented()
    const codes = [...new Set(classes.map((c) => c.code))].sort((a, b) => a - b)
    assert.deepStrictEqual(codes, [1, 2, 130], "the exit codes of the errors")
    for (const code of codes) {
      const expected = [...new Set(classes.filter((c) => c.code === code).map((c) => c.tag))].sort()
      const rows = [...(tables.get(code) ?? [])]
      const missing = expected.filter((tag) => !rows.includes(tag))
      assert.deepStrictEqual(
        missing,
        [],
        `errors of exit code ${code} missing from the "## Exit ${code}" table of docs/exit-codes.md: ` +
          missing.map((tag) => `${tag} (${classes.find((c) => c.tag === tag)!.file})`).join(", ")
      )
      assert.deepStrictEqual(rows.filter((tag) => !expected.includes(tag)), [], `rows of the "## Exit ${code}" table that no error of that code has`)
      assert.strictEqual(new Set(rows).size, rows.length, `a row twice in the "## Exit ${code}" table`)
    }
    // the part this is about: the errors a run cannot start with
    assert.isAtLeast(tables.get(2)?.length ?? 0, 20)
  })
})
