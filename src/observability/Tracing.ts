/**
 * OpenTelemetry tracing through Effect's own OTLP exporter (effect/observability): active only when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then every
 * `Effect.fn` span (migrate, S3Store.put, ...) is exported over OTLP/HTTP JSON to `<endpoint>/v1/traces`.
 * The other OTEL_* variables (headers, timeouts, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER) apply.
 */
import { ConfigProvider, Layer } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpSerialization, OtlpTracer } from "effect/observability"

export const layer = (version: string) =>
  OtlpTracer.layerFromConfig({ resource: { serviceName: "lo-migrate", serviceVersion: version } }).pipe(
    Layer.provide([FetchHttpClient.layer, OtlpSerialization.layerJson]),
    // OpenTelemetry's default for OTEL_TRACES_EXPORTER is "otlp"; Effect's reader has no default (= off)
    Layer.provide(ConfigProvider.layerAdd(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: ["otlp"] })))
  )
