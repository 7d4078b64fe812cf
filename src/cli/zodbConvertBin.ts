#!/usr/bin/env node
/** The `zodb-convert` executable (exit codes: Main.ts). */
import { runZodbConvert } from "./Cli.ts"
import { runProcess } from "./Main.ts"

runProcess("zodb-convert", runZodbConvert)
