// The folders of src/ are layers: a module imports only its own folder and folders below it, so the
// tree reads as the architecture (docs/ARCHITECTURE.md). Inside profiles/ and zodb/, each subfolder is
// a room of its own: it may use the folders below the wing, never a sibling room.
import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const src = fileURLToPath(new URL("../src", import.meta.url))

/** Lower numbers are lower layers; folders of one rank must not import each other. */
const rank: Record<string, number> = {
  domain: 0,
  core: 1,
  observability: 2,
  postgres: 2,
  s3: 2,
  pipeline: 2,
  phases: 3,
  profiles: 4,
  migrate: 5,
  zodb: 5,
  embedded: 6,
  cli: 7,
  ".": 8
}

const modules = (dir: string): Array<string> =>
  NodeFs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? modules(NodePath.join(dir, e.name)) : e.name.endsWith(".ts") ? [NodePath.join(dir, e.name)] : []
  )

const importsOf = (file: string): Array<string> =>
  [...NodeFs.readFileSync(file, "utf8").matchAll(/(?:from\s+|import\(\s*)"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    NodePath.relative(src, NodePath.resolve(NodePath.dirname(file), m[1]!))
  )

/** ["profiles", "nice2"] for src/profiles/nice2/Nice2.ts, [".", undefined] for src/index.ts */
const placeOf = (relative: string): readonly [string, string | undefined] => {
  const parts = relative.split(NodePath.sep)
  return parts.length === 1 ? [".", undefined] : [parts[0]!, parts.length > 2 ? parts[1] : undefined]
}

const violation = (from: string, to: string): string | undefined => {
  const [fromTop, fromRoom] = placeOf(from)
  const [toTop, toRoom] = placeOf(to)
  if (rank[fromTop] === undefined) return `${from}: folder ${fromTop}/ has no layer (add it to Layers.test.ts)`
  if (rank[toTop] === undefined) return `${from} -> ${to}: folder ${toTop}/ has no layer`
  if (fromTop === toTop) {
    // inside a wing: a room may not use a sibling room; the wing's own files may use any room
    if (toRoom !== undefined && fromRoom !== undefined && toRoom !== fromRoom) {
      return `${from} -> ${to}: ${fromTop}/${fromRoom}/ may not use its sibling ${fromTop}/${toRoom}/`
    }
    if (toRoom === undefined && fromRoom !== undefined) return `${from} -> ${to}: a room may not use its wing's top files`
    return undefined
  }
  return rank[toTop]! < rank[fromTop]! ? undefined : `${from} -> ${to}: ${fromTop}/ may not import ${toTop}/ (not below it)`
}

describe("source layout", () => {
  it("every import points to the module's own folder or to a folder below it", () => {
    const found = modules(src).flatMap((file) => {
      const from = NodePath.relative(src, file)
      return importsOf(file).flatMap((to) => {
        const problem = violation(from, to)
        return problem === undefined ? [] : [problem]
      })
    })
    assert.deepStrictEqual(found, [])
  })
})
