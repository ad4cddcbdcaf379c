import type { IncomingHttpHeaders } from "node:http";
import { listenForMetrics } from "./metrics-listener.js";
import { PrometheusMetrics, type LoadSources } from "./prometheus.js";
import type { InferenceOutcome, RequestTrace, Telemetry } from "./telemetry.js";
import { NO_TRACING, startTracing, type ExportWarning, type Tracing } from "./tracing.js";
import type { ObservabilitySettings } from "./settings.js";

/** Metrics (when a port is set) and traces (when an OTLP endpoint is set) behind one Telemetry. */
export class Observability implements Telemetry {
  private constructor(
    private readonly metrics: PrometheusMetrics | undefined,
    private readonly tracing: Tracing,
    private readonly listener: { url: string; close(): Promise<void> } | undefined,
  ) {}

  static async start(options: {
    settings: ObservabilitySettings;
    env: Readonly<Record<string, string | undefined>>;
    specialists: readonly string[];
    sources: LoadSources;
    version: string;
    /** Where a collector that does not take the spans is reported; silent when absent. */
    warn?: ExportWarning | undefined;
  }): Promise<Observability> {
    const { settings } = options;
    const metrics = settings.metricsPort === 0 ? undefined : new PrometheusMetrics(new Set(options.specialists), options.sources);
    const listener = metrics && (await listenForMetrics(metrics, settings.metricsPort, settings.metricsHost));
    try {
      return new Observability(metrics, await startTracing(options.env, options.version, options.warn), listener);
    } catch (error) {
      await listener?.close();
      throw error;
    }
  }

  get off(): boolean {
    return this.metrics === undefined && this.tracing === NO_TRACING;
  }

  /** Where Prometheus scrapes; undefined when metrics are off. */
  get metricsUrl(): string | undefined {
    return this.listener?.url;
  }

  httpRequest(route: string, status: number, seconds: number | undefined): void {
    this.metrics?.httpRequest(route, status, seconds);
  }
  gateRejection(code: string): void {
    this.metrics?.gateRejection(code);
  }
  dependencyFailure(dependency: "redis" | "database"): void {
    this.metrics?.dependencyFailure(dependency);
  }
  inference(outcome: InferenceOutcome): void {
    this.metrics?.inference(outcome);
  }
  firstToken(specialist: string, seconds: number): void {
    this.metrics?.firstToken(specialist, seconds);
  }
  interToken(specialist: string, seconds: number): void {
    this.metrics?.interToken(specialist, seconds);
  }
  ledgerWrites(delta: number): void {
    this.metrics?.ledgerWrites(delta);
  }
  startTrace(method: string, route: string, headers: IncomingHttpHeaders): RequestTrace {
    return this.tracing.startTrace(method, route, headers);
  }

  async close(): Promise<void> {
    await this.listener?.close();
    await this.tracing.shutdown();
  }
}
