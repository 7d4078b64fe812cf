/**
 * The `lo-migrate` command line: the root command and its subcommands.
 */
import { Effect, Stdio } from "effect"
import { CliError, Command, Flag, GlobalFlag } from "effect/cli"
import * as ConfigFile from "./ConfigFile.ts"
import { demo } from "./demo.ts"
import { migrate } from "./migrate.ts"
import { plan } from "./plan.ts"
import { prune } from "./prune.ts"
import { uploadBlobs } from "./uploadBlobs.ts"
import { verify } from "./verify.ts"
import { zodbConvert } from "./zodbConvert.ts"

export const version = "0.1.0"

/** `--config FILE` (see ConfigFile.ts, which applies it before parsing): declared so every command accepts it. */
export const configFlag = GlobalFlag.Setting(ConfigFile.flagName)({
  flag: Flag.String(ConfigFile.flagName).pipe(
    Flag.withDescription("JSON file of settings keyed by long flag name; flags and environment win over it"),
    Flag.optional
  )
})

export const cli = Command.make("lo-migrate").pipe(
  Command.withDescription("Move PostgreSQL large objects into S3-compatible storage, re-keyed by SHA-256"),
  Command.withSubcommands([migrate, uploadBlobs, plan, verify, prune, zodbConvert, demo]),
  Command.withGlobalFlags([configFlag])
)

/**
 * A value effect/cli refused (it printed the error and the help already) that did not come from the
 * command line: one more line says where it came from, since the flag's name alone does not.
 */
const tellOrigin = (name: string, origins: ConfigFile.Origins) => <E>(error: E): Effect.Effect<never, E> => {
  const invalid = CliError.isCliError(error) && error._tag === "ShowHelp"
    ? error.errors.flatMap((e) => (e._tag === "InvalidValue" && e.kind === "flag" ? [e.option.replace(/^-+/, "")] : []))
    : []
  const lines = invalid.flatMap((flag) => {
    const from = origins(flag)
    return from === undefined ? [] : [`${name}: the value of --${flag} came from ${from}\n`]
  })
  return Effect.andThen(lines.length === 0 ? Effect.void : Effect.sync(() => process.stderr.write(lines.join(""))), Effect.fail(error))
}

/**
 * Runs the CLI on the process's argv, with the --config file's settings added first; a bad setting's
 * message says where its value came from (environment variable, config file and line).
 */
export const run = Stdio.Stdio.use(({ args }) =>
  Effect.flatMap(args, (argv) =>
    Effect.flatMap(ConfigFile.applyWithOrigins(cli, argv, process.env), ({ argv: withFile, origins }) =>
      Command.runWith(cli, { version })(withFile).pipe(
        Effect.mapError(ConfigFile.locate(origins)),
        Effect.catch(tellOrigin("lo-migrate", origins))
      )))
)

/** The `zodb-convert` executable: the same command as `lo-migrate zodb-convert`, at the root. */
export const runZodbConvert = Stdio.Stdio.use(({ args }) =>
  Effect.flatMap(args, (argv) => {
    const origins = ConfigFile.originsOf(zodbConvert, argv, process.env)
    return Command.runWith(zodbConvert, { version })(argv).pipe(
      Effect.mapError(ConfigFile.locate(origins)),
      Effect.catch(tellOrigin("zodb-convert", origins))
    )
  }))
