// Scratch directories for tests, inside the per-run directory that `globalSetup.ts` creates. A scoped dir is
// removed when its scope closes; if a worker is killed first, the run's teardown (or its watchdog, if the
// whole runner died) still removes it with the run directory.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, FileSystem, type Scope } from "effect"
import { inject } from "vitest"

/** This test run's scratch directory (only callable inside a vitest worker). */
export const testRunDir = (): string => inject("loMigrateRunDir")

/** A fresh directory under the run's scratch directory, removed with the scope. */
export const scopedTempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.makeTempDirectoryScoped({ directory: testRunDir(), prefix })
  }).pipe(Effect.orDie, Effect.provide(NodeFileSystem.layer))
