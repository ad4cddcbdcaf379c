import type { IncomingHttpHeaders } from "node:http";
import { NO_TRACE, type RequestTrace } from "./telemetry.js";

export interface Tracing {
  startTrace(method: string, route: string, headers: IncomingHttpHeaders): RequestTrace;
  /** Sends what is buffered and stops. */
  shutdown(): Promise<void>;
}

/** How long the spans still buffered at shutdown may take to reach the collector; the rest are dropped. */
export const FLUSH_AT_SHUTDOWN_MS = 2_000;

export const NO_TRACING: Tracing = { startTrace: () => NO_TRACE, shutdown: async () => undefined };

let sdkLoaded = false;

/** Whether this process has loaded the OpenTelemetry SDK (it must not when tracing is off). */
export const tracingSdkLoaded = (): boolean => sdkLoaded;

/** Tracing is on when the standard variables name an OTLP endpoint and do not disable the SDK. */
export function tracingWanted(env: Readonly<Record<string, string | undefined>>): boolean {
  // The OpenTelemetry spec reads a boolean variable as true for "true" in any case, after trimming.
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true" || env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Told when the collector did not take a batch: how many spans were dropped, and why (cut short). */
export type ExportWarning = (spansDropped: number, reason: string) => void;

export async function startTracing(
  env: Readonly<Record<string, string | undefined>>,
  serviceVersion: string,
  warn: ExportWarning = () => undefined,
): Promise<Tracing> {
  if (!tracingWanted(env)) return NO_TRACING;
  // Dynamic import: without an endpoint, none of the SDK or exporter is loaded.
  const { startOtelTracing } = await import("./otel-tracing.js");
  sdkLoaded = true;
  return startOtelTracing(env, serviceVersion, warn);
}
