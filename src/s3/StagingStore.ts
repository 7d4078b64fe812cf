/**
 * The deferred mode's object store: instead of S3, each object goes to a file in a staging directory
 * and gets a line in the manifest (see Manifest.ts); `lo-migrate upload-blobs` uploads them later.
 *
 * Crash safety, step by step: the object is written to a temp name, fsync'd, renamed to its final name
 * and the directory fsync'd, so a staged file is either complete or absent; only then is its manifest
 * line appended and fsync'd. A line therefore never points at a missing or truncated file, and an
 * object whose line is not on disk is simply staged again by the next run (the rename replaces any
 * file a killed run left). Temp files of killed runs are removed when the store opens.
 */
import { Context, Effect, Layer, Option, Semaphore } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeFsP from "node:fs/promises"
import * as NodePath from "node:path"
import { describeCause, ManifestError, StoreError, StoreUnavailable } from "../domain/Errors.ts"
import * as Manifest from "./Manifest.ts"
import { ObjectStore, type PutRequest } from "./ObjectStore.ts"

export interface StagingOptions {
  /** the manifest file; created with its header when missing */
  readonly manifest: string
  /** where staged files go; created when missing */
  readonly directory: string
}

/** The staging run's view of the manifest: which rows are already staged (and need no work). */
export class Staging extends Context.Service<Staging, {
  readonly manifest: string
  readonly directory: string
  readonly isStaged: (rowKey: string) => boolean
  /** lines in the manifest when the store opened */
  readonly alreadyStaged: number
}>()("lo-migrate/store/Staging") {}

/** The staged file of a row: content-addressed, plus the row key's hash so two rows never share one. */
export const stagedName = (sha256: string, rowKey: string) =>
  `${sha256}.${createHash("sha1").update(rowKey).digest("hex").slice(0, 16)}`

const tempSuffix = ".staging-tmp"

const fsyncDirectory = (dir: string) => {
  const fd = NodeFs.openSync(dir, "r")
  try {
    NodeFs.fsyncSync(fd)
  } finally {
    NodeFs.closeSync(fd)
  }
}

/** Cuts a torn last line (no newline) off the manifest, so the next append starts on a line of its own. */
const repairTail = (path: string) => {
  const size = NodeFs.statSync(path).size
  if (size === 0) return
  const fd = NodeFs.openSync(path, "r+")
  try {
    const window = Math.min(size, 1 << 20)
    let end = size
    const buffer = Buffer.alloc(window)
    // walk back in windows to the last newline
    while (end > 0) {
      const start = Math.max(0, end - window)
      const n = NodeFs.readSync(fd, buffer, 0, end - start, start)
      const at = buffer.subarray(0, n).lastIndexOf(0x0a)
      if (at !== -1) {
        const keep = start + at + 1
        if (keep !== size) {
          NodeFs.ftruncateSync(fd, keep)
          NodeFs.fsyncSync(fd)
        }
        return
      }
      end = start
    }
    NodeFs.ftruncateSync(fd, 0)
    NodeFs.fsyncSync(fd)
  } finally {
    NodeFs.closeSync(fd)
  }
}

export const layer = (options: StagingOptions): Layer.Layer<ObjectStore | Staging, StoreUnavailable | ManifestError> =>
  Layer.effectContext(Effect.gen(function*() {
    const manifest = NodePath.resolve(options.manifest)
    const directory = NodePath.resolve(options.directory)
    const unusable = (problem: string) => new StoreUnavailable({ bucket: `staging directory ${directory}`, problem })

    yield* Effect.try({
      try: () => {
        NodeFs.mkdirSync(directory, { recursive: true })
        for (const name of NodeFs.readdirSync(directory)) {
          if (name.endsWith(tempSuffix)) NodeFs.rmSync(NodePath.join(directory, name), { force: true })
        }
        const probe = NodePath.join(directory, `.probe-${randomBytes(6).toString("hex")}${tempSuffix}`)
        NodeFs.writeFileSync(probe, "lo-migrate write probe\n")
        NodeFs.rmSync(probe)
      },
      catch: (cause) => unusable(`is not writable: ${describeCause(cause)}`)
    })

    // a new manifest gets its header (on disk before any line); an existing one is checked and repaired
    const fresh = !NodeFs.existsSync(manifest) || NodeFs.statSync(manifest).size === 0
    if (fresh) {
      yield* Effect.try({
        try: () => {
          const fd = NodeFs.openSync(manifest, "w", 0o600)
          try {
            NodeFs.writeSync(fd, Manifest.header)
            NodeFs.fsyncSync(fd)
          } finally {
            NodeFs.closeSync(fd)
          }
          fsyncDirectory(NodePath.dirname(manifest))
        },
        catch: (cause) => new ManifestError({ path: manifest, problem: `cannot be created: ${describeCause(cause)}` })
      })
    } else {
      yield* Effect.try({
        try: () => repairTail(manifest),
        catch: (cause) => new ManifestError({ path: manifest, problem: `cannot be written: ${describeCause(cause)}` })
      })
    }

    // Rows already staged are skipped by this run. The set holds one key per staged row: the only
    // per-object state of the deferred mode (about 100 bytes a row).
    const staged = new Set<string>()
    yield* Manifest.forEachLine(manifest, (line) =>
      typeof line.entry === "string"
        ? Effect.fail(new ManifestError({ path: manifest, problem: `line ${line.number} ${line.entry}` }))
        : Effect.sync(() => {
          staged.add((line.entry as Manifest.Entry).rowKey)
        }))

    const fd = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => NodeFsP.open(manifest, "a"),
        catch: (cause) => new ManifestError({ path: manifest, problem: `cannot be opened for appending: ${describeCause(cause)}` })
      }),
      (fd) => Effect.promise(() => fd.close())
    )
    const appending = yield* Semaphore.make(1)

    // Asynchronous I/O: an fsync of a large object must not stall the fibers reading PostgreSQL.
    const writeStaged = (request: PutRequest, finalPath: string) => {
      const temp = `${finalPath}.${randomBytes(4).toString("hex")}${tempSuffix}`
      const failed = (cause: unknown) => new StoreError({ operation: "stage", key: request.key, cause })
      return Effect.gen(function*() {
        const out = yield* Effect.acquireRelease(
          Effect.tryPromise({ try: () => NodeFsP.open(temp, "wx", 0o600), catch: failed }),
          (handle) => Effect.promise(() => handle.close().catch(() => undefined))
        )
        const chunk = 8 * 1024 * 1024
        for (let offset = 0; offset < request.payload.size; offset += chunk) {
          const bytes = yield* request.payload.read(offset, Math.min(chunk, request.payload.size - offset)).pipe(
            Effect.mapError(failed)
          )
          yield* Effect.tryPromise({
            try: async () => {
              let done = 0
              while (done < bytes.length) {
                done += (await out.write(bytes, done, bytes.length - done, offset + done)).bytesWritten
              }
            },
            catch: failed
          })
        }
        yield* Effect.tryPromise({ try: () => out.sync(), catch: failed })
      }).pipe(
        Effect.scoped,
        Effect.andThen(Effect.tryPromise({
          try: async () => {
            await NodeFsP.rename(temp, finalPath)
            const dir = await NodeFsP.open(directory, "r")
            try {
              await dir.sync()
            } finally {
              await dir.close()
            }
          },
          catch: failed
        })),
        Effect.onExit((exit) => exit._tag === "Success" ? Effect.void : Effect.promise(() => NodeFsP.rm(temp, { force: true })))
      )
    }

    const put = Effect.fn("StagingStore.put")(function*(request: PutRequest) {
      const rowKey = request.rowKey ?? request.key
      const finalPath = NodePath.join(directory, stagedName(request.sha256, rowKey))
      yield* writeStaged(request, finalPath)
      const line = Manifest.encode({
        stagedPath: finalPath,
        s3Key: request.key,
        rowKey,
        size: request.payload.size,
        sha256: request.sha256,
        sha1: request.metadata.sha1 ?? "",
        // upload-blobs computes what it sends itself; "" when the object was read in parts
        md5: request.md5 ?? "",
        contentType: request.contentType,
        oid: request.metadata.oid === undefined ? null : Number(request.metadata.oid)
      })
      yield* appending.withPermits(1)(Effect.tryPromise({
        try: async () => {
          const bytes = Buffer.from(line)
          let done = 0
          while (done < bytes.length) done += (await fd.write(bytes, done, bytes.length - done)).bytesWritten
          await fd.sync()
        },
        catch: (cause) => new StoreError({ operation: "append to the manifest", key: request.key, cause })
      }))
      staged.add(rowKey)
    })

    // Nothing staged counts as stored until upload-blobs has put it in S3: head and get find nothing.
    const store = ObjectStore.of({
      target: `staging directory ${directory} (manifest ${manifest})`,
      probe: Effect.void,
      checkRead: Effect.void,
      put,
      head: (key) => Effect.succeed(Option.none()).pipe(Effect.tap(() => Effect.logDebug(`staging store: no head for ${key}`))),
      get: (key) => Effect.succeed(Option.none()).pipe(Effect.tap(() => Effect.logDebug(`staging store: no get for ${key}`)))
    })
    return Context.make(ObjectStore, store).pipe(
      Context.add(Staging, Staging.of({ manifest, directory, isStaged: (k) => staged.has(k), alreadyStaged: staged.size }))
    )
  }))
