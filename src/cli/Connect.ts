/**
 * The PostgreSQL and S3 settings of every command, validated as migrate validates them.
 */
import { Effect, Option, type Redacted } from "effect"
import { SettingsError } from "../domain/Errors.ts"
import { type Settings, validate } from "../domain/Settings.ts"
import { profileInput, type ProfileFlagValues } from "./ProfileFlags.ts"

export interface ConnectionInput {
  readonly pgUrl: Option.Option<Redacted.Redacted<string>>
  readonly s3Url: Option.Option<string>
  readonly accessKey: Option.Option<Redacted.Redacted<string>>
  readonly secretKey: Option.Option<Redacted.Redacted<string>>
  readonly bucket: string
  readonly region: string
  readonly pathStyle: Option.Option<boolean>
  readonly pgCa: Option.Option<string>
  readonly retries: number
  readonly s3Timeout: number
  readonly pgTimeout: number
}

/** The connection flags as settings input: the optional ones unwrapped. */
export const connectionInput = (flags: ConnectionInput) => ({
  pgUrl: Option.getOrUndefined(flags.pgUrl),
  s3Url: Option.getOrUndefined(flags.s3Url),
  accessKey: Option.getOrUndefined(flags.accessKey),
  secretKey: Option.getOrUndefined(flags.secretKey),
  bucket: flags.bucket,
  region: flags.region,
  pathStyle: Option.getOrUndefined(flags.pathStyle),
  pgCa: Option.getOrUndefined(flags.pgCa),
  retries: flags.retries,
  s3Timeout: flags.s3Timeout,
  pgTimeout: flags.pgTimeout
})

export interface S3WriteInput {
  readonly storageClass: Option.Option<string>
  readonly sse: Option.Option<string>
  readonly sseKmsKeyId: Option.Option<string>
  readonly acl: Option.Option<string>
}

/** The S3 write flags (s3WriteFlags) as settings input. */
export const s3WriteInput = (flags: S3WriteInput) => ({
  storageClass: Option.getOrUndefined(flags.storageClass),
  sse: Option.getOrUndefined(flags.sse),
  sseKmsKeyId: Option.getOrUndefined(flags.sseKmsKeyId),
  acl: Option.getOrUndefined(flags.acl)
})

export const settingsOf = (flags: ConnectionInput & Partial<ProfileFlagValues>): Effect.Effect<Settings, SettingsError> =>
  validate({
    ...(flags.profile === undefined ? {} : profileInput(flags as ProfileFlagValues)),
    ...connectionInput(flags)
  })

export const atLeast = (setting: string, value: number, min: number): Effect.Effect<number, SettingsError> =>
  value >= min ? Effect.succeed(value) : Effect.fail(new SettingsError({ setting, problem: `${value} is below the minimum of ${min}` }))
