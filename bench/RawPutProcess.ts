/**
 * The raw PUT measurement in a Node process of its own, like the lo-migrate run it is compared with
 * (same process shape: no bench state, its own heap and event loop). Reads its job as JSON from argv,
 * prints the Rate as JSON on stdout.
 */
import { rawPut } from "./Measure.ts"

const job = JSON.parse(process.argv[2] ?? "{}") as {
  readonly endpoint: string
  readonly bucket: string
  readonly sizes: ReadonlyArray<number>
  readonly concurrency: number
}
const rate = await rawPut(job.endpoint, job.bucket, job.sizes, job.concurrency)
process.stdout.write(JSON.stringify(rate) + "\n")
