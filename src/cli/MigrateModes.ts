/**
 * The migrate command's operational modes: trial runs (`--limit`) and deferred uploads
 * (`--deferred-blobs MANIFEST [--staging-dir DIR]`), kept apart from the core flags.
 */
import { Effect, Option } from "effect"
import { Flag } from "effect/cli"
import { SettingsError } from "../domain/Errors.ts"
import * as StagingStore from "../s3/StagingStore.ts"

export const modeFlags = {
  limit: Flag.Int("limit").pipe(
    Flag.withDescription("a trial run: migrate at most this many objects, then stop (rerun without it to continue)"),
    Flag.optional
  ),
  deferredBlobs: Flag.String("deferred-blobs").pipe(
    Flag.withDescription(
      "deferred mode: do not contact S3; stage each object in --staging-dir and list it in this manifest (TSV); " +
        "no row is marked until `lo-migrate upload-blobs MANIFEST` uploads them"
    ),
    Flag.optional
  ),
  stagingDir: Flag.String("staging-dir").pipe(
    Flag.withDescription("where --deferred-blobs stages objects [default: MANIFEST.staged next to the manifest]"),
    Flag.optional
  )
}

export interface Mode {
  readonly limit: number | undefined
  /** the manifest, in deferred mode */
  readonly deferred: string | undefined
  readonly store: ReturnType<typeof StagingStore.layer> | undefined
}

export const modeOf = (flags: {
  readonly limit: Option.Option<number>
  readonly deferredBlobs: Option.Option<string>
  readonly stagingDir: Option.Option<string>
  readonly finalize: boolean
}): Effect.Effect<Mode, SettingsError> =>
  Effect.gen(function*() {
    const limit = Option.getOrUndefined(flags.limit)
    if (limit !== undefined && limit < 1) {
      return yield* new SettingsError({ setting: "--limit", problem: `${limit} is below the minimum of 1` })
    }
    const manifest = Option.getOrUndefined(flags.deferredBlobs)
    if (manifest === undefined) {
      if (Option.isSome(flags.stagingDir)) {
        return yield* new SettingsError({ setting: "--staging-dir", problem: "is only used with --deferred-blobs" })
      }
      return { limit, deferred: undefined, store: undefined }
    }
    if (manifest.trim() === "") return yield* new SettingsError({ setting: "--deferred-blobs", problem: "needs a file name" })
    // refused before the staging store creates anything
    if (flags.finalize) {
      return yield* new SettingsError({ setting: "--finalize", problem: "cannot be used with --deferred-blobs (no row is marked before upload-blobs)" })
    }
    const directory = Option.getOrElse(flags.stagingDir, () => `${manifest}.staged`)
    return { limit, deferred: manifest, store: StagingStore.layer({ manifest, directory }) }
  })
