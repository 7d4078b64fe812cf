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
 * What effect/cli's refusal (it printed the error and the help already) does not say: where a refused
 * value came from when not from the command line, and the other ways to give a missing flag (its
 * environment variable, the --config key), since the help lists those far from the error.
 */
const tellOrigin = (name: string, origins: ConfigFile.Origins, command: Command.Command.Any | undefined) =>
<E>(error: E): Effect.Effect<never, E> => {
  const errors = CliError.isCliError(error) && error._tag === "ShowHelp" ? error.errors : []
  const lines = errors.flatMap((e) => {
    if (e._tag === "InvalidValue" && e.kind === "flag") {
      const flag = e.option.replace(/^-+/, "")
      const from = origins(flag)
      return from === undefined ? [] : [`${name}: the value of --${flag} came from ${from}\n`]
    }
    if (e._tag === "MissingOption" && command !== undefined) {
      const flag = e.option.replace(/^-+/, "")
      const env = ConfigFile.envOf(command, flag)
      return [`${name}: help: give --${flag}${env === undefined ? "" : `, set ${env}`}${name === "lo-migrate" ? `, or "${flag}" in the --config file` : ""}\n`]
    }
    return []
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
        Effect.catch(tellOrigin("lo-migrate", origins, ConfigFile.commandOf(cli, argv)))
      )))
)

/** The `zodb-convert` executable: the same command as `lo-migrate zodb-convert`, at the root. */
export const runZodbConvert = Stdio.Stdio.use(({ args }) =>
  Effect.flatMap(args, (argv) => {
    const origins = ConfigFile.originsOf(zodbConvert, argv, process.env)
    return Command.runWith(zodbConvert, { version })(argv).pipe(
      Effect.mapError(ConfigFile.locate(origins)),
      Effect.catch(tellOrigin("zodb-convert", origins, zodbConvert))
    )
  }))
