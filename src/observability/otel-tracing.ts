/**
 * OpenTelemetry tracing. Only ever loaded by dynamic import when an OTLP
 * endpoint is configured, so a server without tracing loads none of the SDK.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import { ConfigError } from "../config/config-error.js";
import type { IncomingHttpHeaders } from "node:http";
import type { RequestTrace, SpanAttributes, TraceHeaders, TraceSpan } from "./telemetry.js";
import { FLUSH_AT_SHUTDOWN_MS, type ExportWarning, type Tracing } from "./tracing.js";

const propagator = new W3CTraceContextPropagator();

class OtelSpan implements TraceSpan {
  constructor(readonly span: Span) {}
  setAttributes(attributes: SpanAttributes): void {
    this.span.setAttributes(attributes);
  }
  end(error?: unknown): void {
    if (error !== undefined) {
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    this.span.end();
  }
  traceHeaders(): TraceHeaders | undefined {
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, this.span), carrier, defaultTextMapSetter);
    const { traceparent, tracestate } = carrier;
    if (traceparent === undefined) return undefined;
    return tracestate === undefined || tracestate === "" ? { traceparent } : { traceparent, tracestate };
  }
}

/** OTLP/HTTP's traces URL from the standard variables: the signal-specific one as is, the base one plus /v1/traces. */
function tracesUrl(env: Readonly<Record<string, string | undefined>>): string {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  return `${(env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "").replace(/\/+$/, "")}/v1/traces`;
}

const SAMPLERS = ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"] as const;

/**
 * The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, as the OpenTelemetry spec defines them
 * (this SDK package reads neither itself); parent-based always-on, the spec's default, when unset.
 */
export function samplerFrom(env: Readonly<Record<string, string | undefined>>): Sampler {
  const given = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || "parentbased_always_on";
  const ratio = (): number => {
    const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
    if (arg === undefined || arg === "") return 1;
    const n = Number(arg);
    if (!Number.isFinite(n) || n < 0 || n > 1)
      throw new ConfigError("OTEL_TRACES_SAMPLER_ARG", `must be a ratio from 0 to 1, got '${arg.slice(0, 40)}'`);
    return n;
  };
  switch (given) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio());
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new ConfigError("OTEL_TRACES_SAMPLER", `must be one of ${SAMPLERS.join(", ")}, got '${given.slice(0, 40)}'`);
  }
}

/** How often at most a failing collector is reported. */
const EXPORT_WARNING_EVERY_MS = 60_000;

/**
 * The OTLP exporter, saying when spans are lost: the SDK drops a batch the collector did not take without a word.
 * One warning a minute at most, with the spans dropped since the last.
 */
class ReportingExporter implements SpanExporter {
  private dropped = 0;
  private lastWarning = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly inner: SpanExporter,
    private readonly warn: ExportWarning,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        this.dropped += spans.length;
        const now = performance.now();
        if (now - this.lastWarning >= EXPORT_WARNING_EVERY_MS) {
          this.lastWarning = now;
          this.warn(this.dropped, (result.error?.message ?? "export failed").slice(0, 300));
          this.dropped = 0;
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** Settles when `work` does, or after `ms`, whichever comes first; a failure to flush is no failure to stop. */
function withinMs(ms: number, work: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([work.catch(() => undefined), limit]).finally(() => clearTimeout(timer));
}

export async function startOtelTracing(
  env: Readonly<Record<string, string | undefined>>,
  serviceVersion: string,
  warn: ExportWarning,
): Promise<Tracing> {
  // The endpoint comes from the given environment; headers, timeouts and compression from the process's OTEL_* variables.
  const detected = detectResources({ detectors: [envDetector] });
  const resource = resourceFromAttributes({ "service.name": "alveare", "service.version": serviceVersion }).merge(detected);
  const provider = new TracerProvider({
    resource,
    sampler: samplerFrom(env),
    spanProcessors: [new BatchSpanProcessor({ exporter: new ReportingExporter(new OTLPTraceExporter({ url: tracesUrl(env) }), warn) })],
  });
  const tracer = provider.getTracer("alveare", serviceVersion);
  return {
    startTrace(method: string, route: string, headers: IncomingHttpHeaders): RequestTrace {
      const incoming = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
      const root = tracer.startSpan(
        `${method} ${route}`,
        { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "http.route": route } },
        incoming,
      );
      const rootContext: Context = trace.setSpan(incoming, root);
      return {
        span(name, attributes, parent) {
          const parentContext = parent instanceof OtelSpan ? trace.setSpan(incoming, parent.span) : rootContext;
          return new OtelSpan(tracer.startSpan(name, { attributes }, parentContext));
        },
        end(attributes) {
          root.setAttributes(attributes);
          const status = attributes["http.response.status_code"];
          if (typeof status === "number" && status >= 500) root.setStatus({ code: SpanStatusCode.ERROR });
          root.end();
        },
      };
    },
    // A collector that accepts connections but never answers would hold the exit for the exporter's timeout
    // (10 s by default) after the drain: a supervisor's stop timeout is sized for the drain alone.
    shutdown: () => withinMs(FLUSH_AT_SHUTDOWN_MS, provider.shutdown()),
  };
}
