/**
 * Where a FileStorage's blob files are (ZODB src/ZODB/blob.py). A blob revision (oid, tid) is the file
 * `<oid path>/<tid repr>.blob` under the blob directory, where
 * - the bushy layout (ZODB's default) makes one directory level per oid byte, most significant first:
 *   oid 0x012b is `0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x2b`;
 * - the lawn layout (deprecated) makes one directory per oid: `0x012b`;
 * - the tid repr is ZODB's `tid_repr`: hex without leading zero bytes, "0x" in front (`0x040d69f33340af33`).
 * The layout is named in the directory's `.layout` file; without one, ZODB's `auto_layout_select` rule
 * applies: a directory holding any non-hidden entry is lawn (made before `.layout` existed), otherwise bushy.
 *
 * Undo: ZODB copies the blob file of the revision an undo restores to a new file under the undo's tid
 * (`FileStorage._txn_undo_write`, and `BlobStorage.undo`), so an undo record's blob is found under its own
 * tid like any other. `findBlob` also looks under the restored revision's tid, for blob directories where
 * that copy is missing; the result says which file it found.
 *
 * Which records are blobs is the pickle codec's business (a record of class `ZODB.blob.Blob`).
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { BlobDirectoryUnusable, BlobFileMissing } from "./FileStorageErrors.ts"

export type Layout = "bushy" | "lawn"

export interface BlobDirectory {
  /** the directory, as given */
  readonly path: string
  readonly layout: Layout
  /** "marker": named by `.layout`; "detected": by ZODB's rule for a directory without one */
  readonly layoutFrom: "marker" | "detected"
}

export const LAYOUT_MARKER = ".layout"
export const BLOB_SUFFIX = ".blob"

const hexOf = (id: bigint) => id.toString(16).padStart(16, "0")

/** ZODB's `oid_repr` / `tid_repr` of an 8-byte id: leading zero bytes dropped, at least one byte, "0x" prefix. */
export const idRepr = (id: bigint): string => {
  const hex = id.toString(16)
  return `0x${hex.length % 2 === 1 ? `0${hex}` : hex}`
}

/** The directory of an oid's blob files, relative to the blob directory. */
export const oidPath = (layout: Layout, oid: bigint): string => {
  if (layout === "lawn") return idRepr(oid)
  const hex = hexOf(oid)
  return Array.from({ length: 8 }, (_, i) => `0x${hex.slice(2 * i, 2 * i + 2)}`).join(NodePath.sep)
}

/** The file of blob revision (oid, tid). */
export const blobPath = (dir: BlobDirectory, oid: bigint, tid: bigint): string =>
  NodePath.join(dir.path, oidPath(dir.layout, oid), `${idRepr(tid)}${BLOB_SUFFIX}`)

const unusable = (path: string, problem: string, fix?: string) => new BlobDirectoryUnusable({ path, problem, fix })
const blobDirFix = "check blob-dir in the source section of the config: it names the directory the storage keeps its blobs in"

/** Opens a blob directory: it must exist; its layout comes from `.layout`, or from ZODB's detection rule. */
export const open = (path: string): Effect.Effect<BlobDirectory, BlobDirectoryUnusable> =>
  Effect.tryPromise({
    try: async (): Promise<BlobDirectory> => {
      const stat = await NodeFs.stat(path)
      if (!stat.isDirectory()) throw unusable(path, "not a directory", blobDirFix)
      const marker = await NodeFs.readFile(NodePath.join(path, LAYOUT_MARKER), "utf8").catch((e: unknown) => {
        if ((e as { readonly code?: unknown }).code === "ENOENT") return undefined
        throw e
      })
      if (marker !== undefined) {
        // Python's str.strip(): the marker is written without a newline, but may have gained one by hand
        const layout = marker.trim()
        if (layout !== "bushy" && layout !== "lawn") {
          throw unusable(
            path,
            `${LAYOUT_MARKER} names the layout ${JSON.stringify(layout)}; ZODB knows "bushy" and "lawn"`,
            `write bushy or lawn (the layout the directory is in) into ${NodePath.join(path, LAYOUT_MARKER)}`
          )
        }
        return { path, layout, layoutFrom: "marker" }
      }
      const entries = await NodeFs.readdir(path)
      return { path, layout: entries.some((name) => !name.startsWith(".")) ? "lawn" : "bushy", layoutFrom: "detected" }
    },
    catch: (e) => {
      if (e instanceof BlobDirectoryUnusable) return e
      const code = (e as { readonly code?: unknown }).code
      if (code === "ENOENT") return unusable(path, "does not exist", blobDirFix)
      if (code === "EACCES") return unusable(path, "permission denied", "run zodb-convert as a user that may read the directory (e.g. its owner)")
      return unusable(path, e instanceof Error ? e.message : String(e))
    }
  })

export interface FoundBlob {
  readonly path: string
  readonly size: number
  /** the tid whose file this is: the record's own, or (undo without its copy) the restored revision's */
  readonly fileTid: bigint
}

const statFile = async (path: string): Promise<number | undefined> => {
  try {
    const s = await NodeFs.stat(path)
    return s.isFile() ? s.size : undefined
  } catch (e) {
    if ((e as { readonly code?: unknown }).code === "ENOENT" || (e as { readonly code?: unknown }).code === "ENOTDIR") return undefined
    throw e
  }
}

/**
 * The blob file of a blob record, or `BlobFileMissing` naming the oid, tid and the path expected.
 * `dataTid` is the record's `DataRecord.dataTid`: for an undo record, the revision whose bytes it restores.
 */
export const findBlob = (
  dir: BlobDirectory,
  oid: bigint,
  tid: bigint,
  dataTid?: bigint | null
): Effect.Effect<FoundBlob, BlobFileMissing | BlobDirectoryUnusable> =>
  Effect.tryPromise({
    try: async (): Promise<FoundBlob> => {
      const own = blobPath(dir, oid, tid)
      const size = await statFile(own)
      if (size !== undefined) return { path: own, size, fileTid: tid }
      const alsoTried: Array<string> = []
      if (dataTid !== undefined && dataTid !== null && dataTid !== tid) {
        const original = blobPath(dir, oid, dataTid)
        const originalSize = await statFile(original)
        if (originalSize !== undefined) return { path: original, size: originalSize, fileTid: dataTid }
        alsoTried.push(original)
      }
      throw new BlobFileMissing({ oid, tid, expected: own, alsoTried })
    },
    catch: (e) => {
      if (e instanceof BlobFileMissing) return e
      return unusable(dir.path, e instanceof Error ? e.message : String(e))
    }
  })
