/**
 * The bytes of one object between the receiver and the storer: in memory up to `inMemMax`, otherwise in
 * a temp file. Each payload owns a Scope, a child of the run's scope: the receiver opens it, the storer
 * releases it once the upload is done, and closing the run's scope (failure, interruption) releases any
 * payload still open. So a temp file is removed on success, failure and interruption by construction;
 * only SIGKILL can leave one behind, and those are named `lo_migrate.*` in the temp directory.
 */
import { Effect, Exit, Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as NodeFsSync from "node:fs"
import * as NodeFs from "node:fs/promises"
import { Readable } from "node:stream"
import * as NodePath from "node:path"
import { PayloadError } from "../domain/Errors.ts"
import type { Payload, PayloadWriter } from "../domain/Payload.ts"
import type { MemoryBudget } from "./MemoryBudget.ts"

export type { Payload, PayloadWriter } from "../domain/Payload.ts"

export const tempFilePrefix = "lo_migrate."

/**
 * Starts a payload for an object that the row says has `expectedSize` bytes. The choice of memory or
 * file follows the row's size, as the original did; a row that lies is caught by the size check.
 */
export const open = (options: {
  readonly expectedSize: number
  readonly inMemMax: number
  readonly tempDir: string
  readonly parent: Scope.Scope
  /** in-memory payloads take their size from this budget until released */
  readonly budget?: MemoryBudget | undefined
}): Effect.Effect<PayloadWriter, PayloadError> =>
  Effect.gen(function*() {
    const inMemory = options.expectedSize <= options.inMemMax
    const giveBack = inMemory && options.budget !== undefined ? yield* options.budget.acquire(options.expectedSize) : Effect.void
    const scope = yield* Scope.fork(options.parent)
    yield* Scope.addFinalizer(scope, giveBack)
    const release = Scope.close(scope, Exit.void)
    return inMemory
      ? memoryWriter(release)
      : yield* fileWriter(options.tempDir, scope, release).pipe(Effect.onError(() => release))
  })

/**
 * A payload of bytes already read (a batched read): owned by a child of `parent`, whose closing runs
 * `onRelease` (giving its bytes back to the memory budget).
 */
export const fromBytes = (bytes: Uint8Array, parent: Scope.Scope, onRelease: Effect.Effect<void>): Effect.Effect<Payload> =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(parent)
    yield* Scope.addFinalizer(scope, onRelease)
    let held = bytes
    const size = bytes.length
    return {
      size,
      location: "memory" as const,
      read: (offset, length) => Effect.succeed(held.subarray(offset, Math.min(size, offset + length))),
      release: Effect.suspend(() => {
        held = new Uint8Array(0)
        return Scope.close(scope, Exit.void)
      })
    }
  })

const memoryWriter = (release: Effect.Effect<void>): PayloadWriter => {
  const chunks: Array<Uint8Array> = []
  let size = 0
  return {
    release,
    write: (chunk) =>
      Effect.sync(() => {
        chunks.push(chunk)
        size += chunk.length
      }),
    seal: Effect.sync(() => {
      // a single chunk (the common case: one lo_get) is used as is, without a copy
      let bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
      chunks.length = 0
      return {
        size,
        location: "memory" as const,
        read: (offset, length) => Effect.succeed(bytes.subarray(offset, Math.min(size, offset + length))),
        release: Effect.suspend(() => {
          bytes = new Uint8Array(0)
          return release
        })
      }
    })
  }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Removes temp files left in `tempDir` by runs that were killed (SIGKILL, power loss): files named
 * `lo_migrate.<pid>.*` whose process no longer exists. Files of live processes are left alone, so runs
 * on other tables sharing the directory are safe. Returns how many were removed.
 */
export const sweepOrphans = (tempDir: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    const names = await NodeFs.readdir(tempDir).catch(() => [] as Array<string>)
    let removed = 0
    for (const name of names) {
      const match = /^lo_migrate\.(\d+)\./.exec(name)
      if (match === null) continue
      const pid = Number(match[1])
      if (pid === process.pid || isAlive(pid)) continue
      await NodeFs.rm(NodePath.join(tempDir, name), { force: true }).then(() => removed++, () => undefined)
    }
    return removed
  })

/**
 * Removes this process's own temp files from `tempDir`, synchronously: for a process that must end at
 * once (the second signal, with a server that does not answer), when scopes cannot close in time.
 */
export const removeOwnSync = (tempDir: string): void => {
  const mine = `${tempFilePrefix}${process.pid}.`
  let names: Array<string> = []
  try {
    names = NodeFsSync.readdirSync(tempDir)
  } catch {
    return
  }
  for (const name of names) {
    if (name.startsWith(mine)) NodeFsSync.rmSync(NodePath.join(tempDir, name), { force: true })
  }
}

const fileWriter = (tempDir: string, scope: Scope.Scope, release: Effect.Effect<void>) =>
  Effect.gen(function*() {
    // the pid in the name lets a later run remove what a killed one left (sweepOrphans)
    const path = NodePath.join(tempDir, `${tempFilePrefix}${process.pid}.${randomBytes(6).toString("hex")}`)
    const fail = (cause: unknown) => new PayloadError({ path, cause })
    // created exclusively and private to this user, like mkstemp
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => NodeFs.open(path, "wx+", 0o600), catch: fail }),
      (handle) =>
        Effect.promise(() =>
          handle.close().catch(() => undefined).then(() => NodeFs.rm(path, { force: true }))
        )
    ).pipe(Scope.provide(scope))
    let size = 0
    const writer: PayloadWriter = {
      release,
      write: (chunk) =>
        Effect.tryPromise({
          try: async () => {
            let done = 0
            while (done < chunk.length) {
              const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, size + done)
              done += bytesWritten
            }
            size += chunk.length
          },
          catch: fail
        }),
      seal: Effect.sync(() => fromFile({ path, handle, size, release }))
    }
    return writer
  })

/**
 * A file as a Payload: positional reads (parallel parts share the handle safely, and a short read is
 * retried) and streams of a handle that stays open until `release`. Temp files and the deferred mode's
 * staged files alike.
 */
export const fromFile = (options: {
  readonly path: string
  readonly handle: NodeFs.FileHandle
  readonly size: number
  readonly release: Effect.Effect<void>
}): Payload => {
  const { path, handle, size } = options
  return {
    size,
    location: "file",
    read: (offset, length) =>
      Effect.tryPromise({
        try: async () => {
          const want = Math.max(0, Math.min(length, size - offset))
          const buffer = Buffer.allocUnsafe(want)
          let got = 0
          while (got < want) {
            const { bytesRead } = await handle.read(buffer, got, want - got, offset + got)
            if (bytesRead === 0) throw new Error(`${path} ended at ${offset + got} of ${size} bytes`)
            got += bytesRead
          }
          return buffer
        },
        catch: (cause) => new PayloadError({ path, cause })
      }),
    // An empty file has no byte range a file stream could cover (its `end` would be -1): it offers no
    // stream, so storers send its (empty) bytes as they do for memory payloads.
    stream: size === 0 ? undefined : (offset, length) => {
      const want = Math.max(0, Math.min(length, size - offset))
      // likewise a zero-length range: `createReadStream` has no way to say "no bytes"
      if (want === 0) return Readable.from([])
      const stream = handle.createReadStream({ start: offset, end: offset + want - 1, autoClose: false })
      // a stream left behind by an aborted attempt must not crash the process when it fails later;
      // its consumer (hash or request) still sees the failure
      stream.on("error", () => undefined)
      return stream
    },
    release: options.release
  }
}
