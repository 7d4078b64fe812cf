/**
 * Where objects go. S3 is one implementation (S3Store.ts); tests wrap a layer to inject faults.
 */
import { Context, type Effect, type Option } from "effect"
import type { StoreError, StoreUnavailable } from "../domain/Errors.ts"
import type { Payload } from "../core/Payload.ts"
import type { PartMd5s } from "../domain/LargeObject.ts"

export interface PutRequest {
  readonly key: string
  /** the source row's key, for stores that record it (the deferred mode's manifest) */
  readonly rowKey?: string | undefined
  readonly payload: Payload
  readonly contentType: string
  /** user metadata (x-amz-meta-*): lower-case keys, ASCII values */
  readonly metadata: Readonly<Record<string, string>>
  /**
   * base64 MD5 of the whole object: the server rejects a body that does not match. Absent for an object
   * read with `partMd5s` (the store computes it if it sends the object whole after all)
   */
  readonly md5?: string | undefined
  /** each part's MD5, computed as the bytes were read: a multipart upload of this part size uses them */
  readonly partMd5s?: PartMd5s | undefined
  /** lowercase hex SHA-256 of the whole object, also sent as a checksum where the request allows */
  readonly sha256: string
}

export interface ObjectInfo {
  readonly size: number
  readonly contentType: string | undefined
  readonly metadata: Readonly<Record<string, string>>
}

export class ObjectStore extends Context.Service<ObjectStore, {
  /** the bucket (or place) objects go to, as shown to users */
  readonly target: string
  /** proves before any work that the store is reachable and accepts writes: puts and deletes a probe */
  readonly probe: Effect.Effect<void, StoreUnavailable>
  /** proves without writing anything that the store is reachable and readable (plan, dry runs) */
  readonly checkRead: Effect.Effect<void, StoreUnavailable>
  /** stores the object; succeeds only once the store has accepted all of its bytes, verified */
  readonly put: (request: PutRequest) => Effect.Effect<void, StoreError>
  readonly head: (key: string) => Effect.Effect<Option.Option<ObjectInfo>, StoreError>
  /**
   * Streams the object's bytes to `onChunk` as they arrive (never the whole object in memory) and
   * returns its length; None when the key does not exist. A failure mid-body is not retried here:
   * the caller, who owns what `onChunk` accumulated, decides whether to start over.
   */
  readonly get: <E, R>(
    key: string,
    onChunk: (chunk: Uint8Array) => Effect.Effect<void, E, R>
  ) => Effect.Effect<Option.Option<number>, StoreError | E, R>
}>()("lo-migrate/store/ObjectStore") {}
