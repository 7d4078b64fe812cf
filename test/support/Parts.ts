// Pieces of the multipart tests: the parts' MD5s of some bytes, a payload holding bytes in memory or
// in a temp file, a copy with one byte flipped, and the Content-MD5s the proxy saw on UploadPart.
import { Effect, Scope } from "effect"
import { createHash } from "node:crypto"
import * as Payload from "../../src/core/Payload.ts"
import type { ProxyRequestLog } from "./FaultProxy.ts"

/** base64 MD5 of each `partSize` slice of `bytes`, in order. */
export const partMd5s = (bytes: Uint8Array, partSize: number): Array<string> =>
  Array.from({ length: Math.ceil(bytes.length / partSize) }, (_, i) =>
    createHash("md5").update(bytes.subarray(i * partSize, Math.min(bytes.length, (i + 1) * partSize))).digest("base64"))

/** A sealed payload of `bytes`: in memory, or in a temp file when `inFile`. */
export const payloadOf = (bytes: Uint8Array, options: { readonly inFile?: boolean } = {}) =>
  Effect.gen(function*() {
    const writer = yield* Payload.open({
      expectedSize: bytes.length,
      inMemMax: options.inFile === true ? 0 : bytes.length,
      tempDir: "/tmp",
      parent: yield* Scope.make()
    })
    yield* writer.write(bytes)
    return yield* writer.seal
  })

/** `bytes` with the byte at `offset` flipped. */
export const damaged = (bytes: Uint8Array, offset: number): Uint8Array => {
  const copy = Uint8Array.from(bytes)
  copy[offset] = copy[offset]! ^ 0xff
  return copy
}

/** [part number, Content-MD5] of every UploadPart the proxy saw whose path matches `path`, in part order. */
export const sentPartMd5s = (log: ReadonlyArray<ProxyRequestLog>, path: (p: string) => boolean = () => true) =>
  log.filter((r) => r.method === "PUT" && /partNumber=/.test(r.path) && path(r.path))
    .map((r) => [Number(/partNumber=(\d+)/.exec(r.path)![1]), r.headers["content-md5"]] as const)
    .sort((a, b) => a[0] - b[0])
