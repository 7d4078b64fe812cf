/**
 * One ZODB data record (class pickle + state pickle) to the row zodb-pgjsonb writes into object_state:
 * class_mod, class_name, state (JSON text for jsonb), state_size and refs — what zodb-json-codec 1.6.1's
 * `decode_zodb_record_for_pg_json` gives (mode "codec"), or the same with the codec's losses repaired
 * where zodb-pgjsonb's loader can read a better form back (mode "faithful", the default).
 */
import { Effect } from "effect"
import { classInfo } from "./ClassInfo.ts"
import { ClassPickleError, PickleError, type RecordError, StateError } from "./CodecErrors.ts"
import type { Loss } from "./Loss.ts"
import { PickleReader } from "./Pickle.ts"
import { collectRefs } from "./Refs.ts"
import { type CodecMode, LossTally, stateJson } from "./StateJson.ts"

export type { CodecMode } from "./StateJson.ts"

export interface DecodeOptions {
  /** "codec": exactly the codec's output; "faithful" (default): the loader-reversible forms where they exist */
  readonly mode?: CodecMode
}

export interface DecodedRecord {
  readonly classMod: string
  readonly className: string
  /** the state as JSON text, to insert as jsonb */
  readonly stateJson: string
  /** referenced oids (signed i64): the codec's list plus bare-oid references, in walk order */
  readonly refs: ReadonlyArray<bigint>
  /** exactly the codec's refs (order and duplicates as the codec gives them) */
  readonly codecRefs: ReadonlyArray<bigint>
  /** byte length of the record, as zodb-pgjsonb stores it */
  readonly stateSize: number
  /** what the codec's output loses for this record (see Loss.ts); `repaired` tells if this output does */
  readonly losses: ReadonlyArray<Loss>
}

/**
 * Decodes a record. Throws a RecordError (PickleError, ClassPickleError, StateError) carrying the byte
 * offset of the problem; nothing else.
 */
export const decodeRecord = (bytes: Uint8Array, options?: DecodeOptions): DecodedRecord => {
  const mode = options?.mode ?? "faithful"
  const reader = new PickleReader(bytes)
  const classValue = reader.next()
  const stateOffset = reader.pos
  const state = reader.next()
  const cls = classInfo(classValue, mode, stateOffset - 1)
  const tally = new LossTally()
  const json = stateJson(state, cls.module, cls.name, {
    mode,
    offset: stateOffset,
    trackShared: reader.mutableGets > 0,
    recordBytes: bytes.length
  }, tally)
  const { bareOids, codecRefs, refs } = collectRefs(state, stateOffset, bytes.length)

  const losses: Array<Loss> = []
  if (cls.loss !== undefined) losses.push(cls.loss)
  if (bareOids.length > 0) {
    losses.push({
      reason: "bare-oid-ref",
      detail: `bare-oid persistent reference(s) ${
        [...new Set(bareOids.map(hexOid))].join(",")
      } (class with __getnewargs__) not in the codec's refs; state has {"@ref":{"@b":...}}`,
      repaired: true
    })
  }
  losses.push(...tally.losses(mode))
  if (reader.codecRejects.length > 0) {
    losses.push({
      reason: "codec-rejects",
      detail: `zodb-json-codec refuses this record: ${reader.codecRejects.join("; ")}`,
      repaired: true
    })
  }
  return {
    classMod: cls.module,
    className: cls.name,
    stateJson: json,
    refs,
    codecRefs,
    stateSize: bytes.length,
    losses
  }
}

/** decodeRecord as an Effect failing with the RecordError. */
export const decodeRecordEffect = (
  bytes: Uint8Array,
  options?: DecodeOptions
): Effect.Effect<DecodedRecord, RecordError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(decodeRecord(bytes, options))
    } catch (e) {
      if (e instanceof PickleError || e instanceof ClassPickleError || e instanceof StateError) return Effect.fail(e)
      return Effect.die(e)
    }
  })

/** An oid as the 16 hex digits ZODB tools print. */
export const hexOid = (oid: bigint): string => BigInt.asUintN(64, oid).toString(16).padStart(16, "0")
