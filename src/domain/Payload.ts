/** The bytes of one object between reading and storing (the implementation: core/Payload.ts). */
import type { Effect } from "effect"
import type { Readable } from "node:stream"
import type { PayloadError } from "./Errors.ts"

export interface Payload {
  readonly size: number
  readonly location: "memory" | "file"
  /** `length` bytes at `offset`; the last read may be shorter only if the payload is. */
  readonly read: (offset: number, length: number) => Effect.Effect<Uint8Array, PayloadError>
  /** Frees the memory or removes the temp file. Idempotent. */
  readonly release: Effect.Effect<void>
  /**
   * File payloads only: a fresh stream of `length` bytes at `offset`, so a storer can send a part of a
   * large object without holding it in memory (a new stream for every attempt).
   */
  readonly stream?: ((offset: number, length: number) => Readable) | undefined
}

/** Collects the chunks of one object while it is read, then seals them into a Payload. */
export interface PayloadWriter {
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, PayloadError>
  readonly seal: Effect.Effect<Payload, PayloadError>
  /** Abandons the payload (a failed read): frees what was written. */
  readonly release: Effect.Effect<void>
}
