import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from "prom-client";
import { DURATION_BOUNDS, type DurationCounts } from "./duration-counts.js";
import type { InferenceOutcome } from "./telemetry.js";

/** What an engine has waiting and running, read at scrape time. */
export interface EngineLoad {
  engine: string;
  queued: number;
  busy: number;
}

/** One configured remote upstream's health as the remote engine last saw it (a pool may name one URL for several models). */
export interface UpstreamHealth {
  specialist: string;
  upstream: string;
  healthy: boolean;
}

/** One upstream's exchanges since start: counts by outcome and the seconds they took. */
export interface UpstreamTraffic {
  upstream: string;
  model: string;
  inFlight: number;
  outcomes: Record<string, number>;
  seconds: number;
  /** Per bucket of DURATION_BOUNDS, not cumulative. */
  durations: DurationCounts;
}

export interface LoadSources {
  engines(): EngineLoad[];
  upstreams(): UpstreamHealth[];
  /** Per upstream and model: engines that share an upstream are summed. */
  upstreamTraffic(): UpstreamTraffic[];
}

/** A request that never reached a route (404s, probes) is counted under one label, never its URL. */
export const UNMATCHED_ROUTE = "unmatched";
export const UNKNOWN_SPECIALIST = "unknown";

const DURATION_BUCKETS = [...DURATION_BOUNDS];
const FIRST_TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const INTER_TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/**
 * The alveare_* metrics in their own registry. Every label value is bounded:
 * route templates, configured specialist ids, status and catalogue codes.
 */
export class PrometheusMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"route" | "status">;
  private readonly duration: Histogram<"route">;
  private readonly inferences: Counter<"specialist" | "endpoint" | "outcome">;
  private readonly tokens: Counter<"specialist" | "kind">;
  private readonly firstTokens: Histogram<"specialist">;
  private readonly interTokens: Histogram<"specialist">;
  private readonly rejections: Counter<"code">;
  private readonly dependencyFailures: Counter<"dependency">;
  private pendingLedgerWrites = 0;

  constructor(
    private readonly specialists: ReadonlySet<string>,
    sources: LoadSources,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[], buckets: number[]) =>
      new Histogram<L>({ name, help, labelNames, buckets, registers });
    this.requests = counter("alveare_http_requests_total", "HTTP requests by route template and status.", ["route", "status"]);
    this.duration = histogram("alveare_http_request_duration_seconds", "HTTP request duration by route template.", ["route"], DURATION_BUCKETS);
    this.inferences = counter("alveare_inference_requests_total", "Inference requests by specialist, endpoint and outcome.", [
      "specialist",
      "endpoint",
      "outcome",
    ]);
    this.tokens = counter("alveare_tokens_total", "Tokens by specialist and kind (prompt, completion).", ["specialist", "kind"]);
    this.firstTokens = histogram(
      "alveare_time_to_first_token_seconds",
      "Time from the start of generation to the first streamed text.",
      ["specialist"],
      FIRST_TOKEN_BUCKETS,
    );
    this.interTokens = histogram("alveare_inter_token_latency_seconds", "Time between streamed pieces of text.", ["specialist"], INTER_TOKEN_BUCKETS);
    this.rejections = counter(
      "alveare_gate_rejections_total",
      "Requests refused with an authentication, permission or rate-limit error, by catalogue code: the API gate's (key, plan, limits, quota) and the dashboard's and admin API's (not_signed_in, csrf_failed, invalid_admin_token).",
      ["code"],
    );
    this.dependencyFailures = counter(
      "alveare_dependency_failures_total",
      "Requests answered 503 dependency_unavailable because the shared PostgreSQL or Redis was out of reach.",
      ["dependency"],
    );
    for (const dependency of ["database", "redis"]) this.dependencyFailures.inc({ dependency }, 0);
    new Gauge({
      name: "alveare_engine_queue_depth",
      help: "Requests waiting for a sequence, per engine, with the further choices (n > 1) of running requests that wait for one (engine.queue bounds the requests only).",
      labelNames: ["engine"],
      registers,
      collect() {
        this.reset();
        for (const e of sources.engines()) this.set({ engine: e.engine }, e.queued);
      },
    });
    new Gauge({
      name: "alveare_engine_sequences_busy",
      help: "Sequences (or upstream requests) in use, per engine.",
      labelNames: ["engine"],
      registers,
      collect() {
        this.reset();
        for (const e of sources.engines()) this.set({ engine: e.engine }, e.busy);
      },
    });
    new Gauge({
      name: "alveare_upstream_healthy",
      help: "1 when the remote upstream passed its last health check.",
      labelNames: ["specialist", "upstream"],
      registers,
      collect() {
        this.reset();
        // One series per specialist and URL: healthy only while every upstream the pool has at that URL is.
        const byUrl = new Map<string, { specialist: string; upstream: string; healthy: boolean }>();
        for (const u of sources.upstreams()) {
          const key = `${u.specialist}\u0000${u.upstream}`;
          const seen = byUrl.get(key);
          if (seen === undefined) byUrl.set(key, { ...u });
          else seen.healthy &&= u.healthy;
        }
        for (const u of byUrl.values()) this.set({ specialist: u.specialist, upstream: u.upstream }, u.healthy ? 1 : 0);
      },
    });
    new Counter({
      name: "alveare_upstream_requests_total",
      help: "Exchanges with each remote upstream, by outcome: ok, http_error, timeout, connection_error, bad_answer, aborted (a retried connection failure counts once on its own).",
      labelNames: ["upstream", "model", "outcome"],
      registers,
      collect() {
        this.reset();
        for (const u of sources.upstreamTraffic()) {
          for (const [outcome, n] of Object.entries(u.outcomes)) this.inc({ upstream: u.upstream, model: u.model, outcome }, n);
        }
      },
    });
    new Counter({
      name: "alveare_upstream_request_seconds_total",
      help: "Seconds spent in exchanges with each remote upstream, streams to their end: its rate over the requests' is the mean.",
      labelNames: ["upstream", "model"],
      registers,
      collect() {
        this.reset();
        for (const u of sources.upstreamTraffic()) this.inc({ upstream: u.upstream, model: u.model }, u.seconds);
      },
    });
    this.registry.registerMetric(upstreamDurationHistogram(sources));
    new Gauge({
      name: "alveare_upstream_requests_in_flight",
      help: "Requests sent to each remote upstream and not yet answered in full.",
      labelNames: ["upstream", "model"],
      registers,
      collect() {
        this.reset();
        for (const u of sources.upstreamTraffic()) this.set({ upstream: u.upstream, model: u.model }, u.inFlight);
      },
    });
    const pending = (): number => this.pendingLedgerWrites;
    new Gauge({
      name: "alveare_ledger_pending_writes",
      help: "Usage records written but not yet committed.",
      registers,
      collect() {
        this.set(pending());
      },
    });
  }

  specialist(id: string): string {
    return this.specialists.has(id) ? id : UNKNOWN_SPECIALIST;
  }

  httpRequest(route: string, status: number, seconds: number | undefined): void {
    this.requests.inc({ route, status: String(status) });
    if (seconds !== undefined) this.duration.observe({ route }, seconds);
  }

  gateRejection(code: string): void {
    this.rejections.inc({ code });
  }

  dependencyFailure(dependency: "redis" | "database"): void {
    this.dependencyFailures.inc({ dependency });
  }

  inference(o: InferenceOutcome): void {
    const specialist = this.specialist(o.specialist);
    this.inferences.inc({ specialist, endpoint: o.endpoint, outcome: o.outcome });
    if (o.promptTokens > 0) this.tokens.inc({ specialist, kind: "prompt" }, o.promptTokens);
    if (o.completionTokens > 0) this.tokens.inc({ specialist, kind: "completion" }, o.completionTokens);
  }

  firstToken(specialist: string, seconds: number): void {
    this.firstTokens.observe({ specialist: this.specialist(specialist) }, seconds);
  }

  interToken(specialist: string, seconds: number): void {
    this.interTokens.observe({ specialist: this.specialist(specialist) }, seconds);
  }

  ledgerWrites(delta: number): void {
    this.pendingLedgerWrites += delta;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * alveare_upstream_request_duration_seconds: a histogram whose buckets the remote engines count as exchanges end
 * (no label lookup per request), rendered at scrape time. prom-client's Histogram can only be observed, so this is
 * a metric of its own with the shape prom-client's registry renders.
 */
function upstreamDurationHistogram(sources: LoadSources): Metric {
  const name = "alveare_upstream_request_duration_seconds";
  const help = "Duration of exchanges with each remote upstream, streams to their end, whatever their outcome.";
  const get = async () => ({
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    values: sources.upstreamTraffic().flatMap((u) => {
      const labels = { upstream: u.upstream, model: u.model };
      let cumulative = 0;
      const buckets = DURATION_BOUNDS.map((le, i) => {
        cumulative += u.durations[i] ?? 0;
        return { metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative };
      });
      const count = cumulative + (u.durations[DURATION_BOUNDS.length] ?? 0);
      return [
        ...buckets,
        { metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: count },
        { metricName: `${name}_sum`, labels, value: u.seconds },
        { metricName: `${name}_count`, labels, value: count },
      ];
    }),
  });
  return { name, help, type: "histogram", aggregator: "sum", get, reset: () => undefined, collect: () => undefined } as unknown as Metric;
}
