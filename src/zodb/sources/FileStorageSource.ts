/**
 * A FileStorage (Data.fs and its blob directory) as a zodb-convert source: the reader of
 * FileStorage.ts, blobs found by BlobDirectory.ts and hashed while read, and the file's unfinished
 * tail reported as a warning (as ZODB does on open).
 */
import { Effect, Layer, Ref, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs/promises"
import * as Payload from "../../core/Payload.ts"
import * as BlobDirectory from "./BlobDirectory.ts"
import * as FileStorage from "./FileStorage.ts"
import { SourceError, type SourceRecord, type SourceTransaction, ZodbSource } from "./ZodbSource.ts"

export interface FileStorageSourceOptions {
  readonly path: string
  readonly blobDir: string | undefined
}

const hashFile = (path: string): Promise<{ readonly sha256: string; readonly md5: string; readonly size: number }> =>
  new Promise((resolve, reject) => {
    const sha256 = createHash("sha256")
    const md5 = createHash("md5")
    let size = 0
    const stream = (async () => {
      const handle = await NodeFs.open(path, "r")
      try {
        for await (const chunk of handle.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>) {
          sha256.update(chunk)
          md5.update(chunk)
          size += chunk.length
        }
      } finally {
        await handle.close()
      }
    })()
    stream.then(() => resolve({ sha256: sha256.digest("hex"), md5: md5.digest("base64"), size }), reject)
  })

export const layer = (options: FileStorageSourceOptions): Layer.Layer<ZodbSource, SourceError> =>
  Layer.effect(
    ZodbSource,
    Effect.gen(function*() {
      const where = `FileStorage ${options.path}`
      const warnings = yield* Ref.make<ReadonlyArray<string>>([])
      const toSourceError = (e: { readonly message: string }) => new SourceError({ source: where, problem: e.message })
      // opened once up front: a missing or foreign file is a setup problem, before any work
      const first = yield* FileStorage.scan(options.path, { afterTid: (1n << 64n) - 1n }).pipe(Effect.mapError(toSourceError))
      void first
      const blobDir = options.blobDir === undefined
        ? undefined
        : yield* BlobDirectory.open(options.blobDir).pipe(Effect.mapError(toSourceError))

      const transactions = (after: bigint | undefined): Stream.Stream<SourceTransaction, SourceError> =>
        FileStorage.transactions(options.path, {
          ...(after === undefined ? {} : { afterTid: after }),
          onWarning: (w) =>
            Effect.andThen(
              Ref.update(warnings, (all) => [...all, FileStorage.describeWarning(w)]),
              Effect.logWarning(FileStorage.describeWarning(w))
            )
        }).pipe(
          Stream.map((t): SourceTransaction => ({
            tid: t.tid,
            user: t.user,
            description: t.description,
            extension: t.extension,
            records: t.records.map((r): SourceRecord => ({
              zoid: r.oid,
              data: r.data,
              offset: r.offset,
              dataTid: r.dataTid ?? undefined
            }))
          })),
          Stream.mapError(toSourceError)
        )

      const blob = (record: SourceRecord, tid: bigint) =>
        Effect.gen(function*() {
          if (blobDir === undefined) {
            return yield* new SourceError({
              source: where,
              problem: "a blob record, but the storage has no blob-dir: set blob-dir in the <filestorage> section",
              tid,
              zoid: record.zoid
            })
          }
          const found = yield* BlobDirectory.findBlob(blobDir, record.zoid, tid, record.dataTid).pipe(
            Effect.mapError((e) => new SourceError({ source: where, problem: e.message, tid, zoid: record.zoid }))
          )
          const fail = (cause: unknown) =>
            new SourceError({ source: where, problem: `read blob file ${found.path}: ${String(cause)}`, tid, zoid: record.zoid })
          const digests = yield* Effect.tryPromise({ try: () => hashFile(found.path), catch: fail })
          const handle = yield* Effect.acquireRelease(
            Effect.tryPromise({ try: () => NodeFs.open(found.path, "r"), catch: fail }),
            (h) => Effect.promise(() => h.close().catch(() => undefined))
          )
          // the file must not change between the hash and the upload: its size is checked again here,
          // and the store checks the bytes it receives against the MD5
          const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: fail })
          if (stat.size !== digests.size) return yield* fail(`the file changed while read (${digests.size} then ${stat.size} bytes)`)
          const payload = Payload.fromFile({ path: found.path, handle, size: digests.size, release: Effect.void })
          return { payload, sha256: digests.sha256, md5: digests.md5 }
        })

      const blobSize = (record: SourceRecord, tid: bigint) =>
        blobDir === undefined
          ? Effect.fail(new SourceError({ source: where, problem: "a blob record, but the storage has no blob-dir", tid, zoid: record.zoid }))
          : BlobDirectory.findBlob(blobDir, record.zoid, tid, record.dataTid).pipe(
            Effect.map((found) => found.size),
            Effect.mapError((e) => new SourceError({ source: where, problem: e.message, tid, zoid: record.zoid }))
          )

      const count = Effect.map(
        FileStorage.scan(options.path).pipe(Effect.mapError(toSourceError)),
        (s) => ({ transactions: s.transactions, records: s.dataRecords + s.backpointerRecords + s.noDataRecords, bytes: s.pickleBytes })
      )

      return ZodbSource.of({ describe: where, transactions, blob, blobSize, count, warnings: Ref.get(warnings) })
    })
  )
