import type { IncomingHttpHeaders } from "node:http";

export type SpanAttributes = Record<string, string | number | boolean>;

/** One timed step of a request's trace. */
export interface TraceSpan {
  setAttributes(attributes: SpanAttributes): void;
  /** Ends the span; an error marks it failed. */
  end(error?: unknown): void;
  /** The W3C trace context headers that make a downstream call this span's child (undefined when tracing is off). */
  traceHeaders(): TraceHeaders | undefined;
}

/** W3C trace context as a downstream call carries it: the caller's tracestate passes on unchanged beside our traceparent. */
export interface TraceHeaders {
  traceparent: string;
  tracestate?: string;
}

/** The trace of one HTTP request: a root span and its children. */
export interface RequestTrace {
  /** Starts a child of the root span (or of `parent`). */
  span(name: string, attributes?: SpanAttributes, parent?: TraceSpan): TraceSpan;
  end(attributes: SpanAttributes): void;
}

/** What an inference request produced, for the counters. */
export interface InferenceOutcome {
  specialist: string;
  endpoint: string;
  /** "success", "client_closed", or the catalogue code of the error. */
  outcome: string;
  promptTokens: number;
  completionTokens: number;
}

/**
 * The one thing the HTTP layer and the inference path call to be observed.
 * The default does nothing, so code that records stays free of conditions.
 */
export interface Telemetry {
  /** `seconds` is undefined for a request refused at the socket, which has no start the server saw: counted, not timed. */
  httpRequest(route: string, status: number, seconds: number | undefined): void;
  /** A refusal by authentication, plan, limit or quota, by its catalogue code. */
  gateRejection(code: string): void;
  /** A request answered 503 because PostgreSQL or Redis was out of reach. */
  dependencyFailure(dependency: "redis" | "database"): void;
  inference(outcome: InferenceOutcome): void;
  firstToken(specialist: string, seconds: number): void;
  interToken(specialist: string, seconds: number): void;
  /** A ledger write started (+1) or settled (-1). */
  ledgerWrites(delta: number): void;
  startTrace(method: string, route: string, headers: IncomingHttpHeaders): RequestTrace;
  /** True when nothing records (no metrics, no traces): the inference path then skips its observer altogether. */
  readonly off?: boolean | undefined;
}

const NO_SPAN: TraceSpan = { setAttributes: () => undefined, end: () => undefined, traceHeaders: () => undefined };
export const NO_TRACE: RequestTrace = { span: () => NO_SPAN, end: () => undefined };

export const NO_TELEMETRY: Telemetry = {
  httpRequest: () => undefined,
  gateRejection: () => undefined,
  dependencyFailure: () => undefined,
  inference: () => undefined,
  firstToken: () => undefined,
  interToken: () => undefined,
  ledgerWrites: () => undefined,
  startTrace: () => NO_TRACE,
  off: true,
};

/** Error types the gate answers with: they count as gate rejections. */
export const GATE_ERROR_TYPES: ReadonlySet<string> = new Set(["authentication_error", "permission_error", "rate_limit_error"]);
