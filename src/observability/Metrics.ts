/**
 * Prometheus metrics (`--metrics-port`): `GET /metrics` in the text exposition format, served by
 * node:http for the duration of a run. Every value is read from a Stats snapshot at scrape time, so
 * the metrics never disagree with the report or the summary.
 */
import { Effect, type Scope } from "effect"
import * as Http from "node:http"
import { SettingsError } from "../domain/Errors.ts"
import { Stats, type StatsSnapshot } from "../core/Stats.ts"

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

interface Family {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge"
  readonly samples: ReadonlyArray<readonly [labels: Readonly<Record<string, string>>, value: number]>
}

const labelText = (labels: Readonly<Record<string, string>>) => {
  const entries = Object.entries(labels)
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "\\$&")}"`).join(",")}}`
}

const stageBytes = { receiver: "received", storer: "stored", committer: "committed" } as const

/** The exposition text of one snapshot. */
export const render = (s: StatsSnapshot): string => {
  const families: ReadonlyArray<Family> = [
    {
      name: "lo_migrate_objects_total",
      help: "Objects that left each stage successfully (observer: listed, receiver: read, storer: stored, committer: marked).",
      type: "counter",
      samples: (["observer", "receiver", "storer", "committer"] as const).map((stage) => [{ stage }, s.processed[stage]])
    },
    {
      name: "lo_migrate_bytes_total",
      help: "Bytes read from PostgreSQL (receiver), stored in S3 (storer) and marked migrated (committer).",
      type: "counter",
      samples: (["receiver", "storer", "committer"] as const).map((stage) => [{ stage }, s.bytes[stageBytes[stage]]])
    },
    { name: "lo_migrate_failed_rows_total", help: "Rows skipped by this run.", type: "counter", samples: [[{}, s.failed]] },
    { name: "lo_migrate_retries_total", help: "Retried S3 and PostgreSQL calls.", type: "counter", samples: [[{}, s.retries]] },
    {
      name: "lo_migrate_queue_used",
      help: "Objects waiting in each queue.",
      type: "gauge",
      samples: s.queues.map((q) => [{ queue: q.name }, q.used])
    },
    {
      name: "lo_migrate_queue_capacity",
      help: "Capacity of each queue.",
      type: "gauge",
      samples: s.queues.map((q) => [{ queue: q.name }, q.capacity])
    },
    {
      name: "lo_migrate_rows_remaining_at_start",
      help: "Rows this run set out to migrate.",
      type: "gauge",
      samples: s.remaining === undefined ? [] : [[{}, s.remaining]]
    },
    {
      name: "lo_migrate_rows",
      help: "Rows in the table when the run started.",
      type: "gauge",
      samples: s.total === undefined ? [] : [[{}, s.total]]
    },
    {
      name: "lo_migrate_run_start_time_seconds",
      help: "Start of the run, Unix time.",
      type: "gauge",
      samples: [[{}, s.startedAt / 1000]]
    }
  ]
  return families
    .filter((f) => f.samples.length > 0)
    .map((f) =>
      [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.samples.map(([l, v]) => `${f.name}${labelText(l)} ${v}`)]
        .join("\n")
    )
    .join("\n") + "\n"
}

export interface MetricsServerOptions {
  readonly host: string
  readonly port: number
}

/**
 * Serves `/metrics` until the scope closes. A port that cannot be bound is a setup problem (exit 2),
 * found before any work. Returns the bound port (useful with port 0).
 */
export const serve = (options: MetricsServerOptions): Effect.Effect<number, SettingsError, Stats | Scope.Scope> =>
  Effect.gen(function*() {
    const stats = yield* Stats
    const server = Http.createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0]
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end()
        return
      }
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("lo-migrate serves /metrics\n")
        return
      }
      Effect.runPromise(stats.snapshot).then(
        (snapshot) => res.writeHead(200, { "content-type": contentType }).end(req.method === "HEAD" ? undefined : render(snapshot)),
        () => res.writeHead(500).end()
      )
    })
    server.keepAliveTimeout = 1000
    return yield* Effect.acquireRelease(
      Effect.callback<number, SettingsError>((resume) => {
        server.once("error", (error: NodeJS.ErrnoException) =>
          resume(Effect.fail(
            new SettingsError({
              setting: "--metrics-port",
              problem: `cannot listen on ${options.host}:${options.port}: ${error.code ?? error.message}`,
              fix: error.code === "EADDRINUSE"
                ? "another process listens on that port: give another --metrics-port"
                : "give a --metrics-port and --metrics-host this process may listen on"
            })
          )))
        server.listen(options.port, options.host, () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : options.port))
        })
      }),
      () =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
  })
