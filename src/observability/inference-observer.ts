import { ApiError } from "../errors.js";
import { dependencyFailure } from "../dependency-unavailable.js";
import type { GenerationResult, TextDetail } from "../engines/types.js";
import { RemoteEngine } from "../engines/remote/remote-engine.js";
import type { Specialist } from "../specialists/specialist.js";
import { NO_TELEMETRY, NO_TRACE, type RequestTrace, type Telemetry, type TraceHeaders, type TraceSpan } from "./telemetry.js";

/** What the inference path calls at each step of a request. */
export interface GenerationObserver {
  admission<T>(admitted: Promise<T>): Promise<T>;
  engineHooks(): { onStarted: () => void; traceHeaders: TraceHeaders | undefined };
  onText(inner: ((delta: string, detail?: TextDetail) => void) | undefined): ((delta: string, detail?: TextDetail) => void) | undefined;
  generated(result: GenerationResult | undefined, failure: unknown): void;
  metering(written: Promise<void>): Promise<void>;
}

const NO_HOOKS = { onStarted: (): void => undefined, traceHeaders: undefined };
const UNOBSERVED: GenerationObserver = {
  admission: (admitted) => admitted,
  engineHooks: () => NO_HOOKS,
  onText: (inner) => inner,
  generated: () => undefined,
  metering: (written) => written,
};

/** The code a client is told when its generation fails: anything but an ApiError is answered as an internal error. */
const outcomeOf = (error: unknown): string => (error instanceof ApiError ? error.code : "internal_error");

/** The code a client is told when its admission or its outcome's write fails: an outage is `dependency_unavailable`. */
const refusalOf = (error: unknown): string => (error instanceof ApiError ? error.code : (dependencyFailure(error)?.code ?? "internal_error"));

/**
 * The metrics and spans of one inference request: admission, queue wait,
 * generation or the upstream call, and metering. The inference path calls it
 * at each step and stays unaware of what, if anything, records.
 */
export function observeGeneration(
  telemetry: Telemetry = NO_TELEMETRY,
  trace: RequestTrace = NO_TRACE,
  specialist: Specialist,
  endpoint: string,
): GenerationObserver {
  // Nothing records: no closures, spans or extra promise layers per request.
  if (telemetry.off === true && trace === NO_TRACE) return UNOBSERVED;
  const remote = specialist.engine instanceof RemoteEngine;
  let requested = 0;
  // The generation's outcome, recorded once metering says whether the answer could be delivered.
  let generated: { outcome: string; result: GenerationResult | undefined } | undefined;
  let generation: TraceSpan | undefined;
  let queue: TraceSpan | undefined;
  const record = (outcome: string, result?: GenerationResult): void =>
    telemetry.inference({
      specialist: specialist.id,
      endpoint,
      outcome,
      promptTokens: result?.promptTokens ?? 0,
      completionTokens: result?.completionTokens ?? 0,
    });

  return {
    async admission<T>(admitted: Promise<T>): Promise<T> {
      const span = trace.span("admission", { "alveare.specialist": specialist.id });
      try {
        const value = await admitted;
        span.end();
        return value;
      } catch (error) {
        span.end(error);
        record(refusalOf(error));
        throw error;
      }
    },

    /** What the engine calls back: leaving the queue, and the trace context for an upstream. */
    engineHooks(): { onStarted: () => void; traceHeaders: TraceHeaders | undefined } {
      requested = performance.now();
      if (remote) {
        generation = trace.span("upstream", { "alveare.specialist": specialist.id, "alveare.upstream_model": specialist.engine.name });
        return { onStarted: () => undefined, traceHeaders: generation.traceHeaders() };
      }
      queue = trace.span("queue", { "alveare.specialist": specialist.id });
      return {
        onStarted: () => {
          queue?.end();
          queue = undefined;
          generation = trace.span("generation", { "alveare.specialist": specialist.id });
        },
        traceHeaders: undefined,
      };
    },

    /** Wraps a stream's text callback to time the first piece and the gaps between pieces. */
    onText(inner: ((delta: string, detail?: TextDetail) => void) | undefined): ((delta: string, detail?: TextDetail) => void) | undefined {
      if (inner === undefined) return undefined;
      let last: number | undefined;
      return (delta: string, detail?: TextDetail) => {
        const now = performance.now();
        if (last === undefined) telemetry.firstToken(specialist.id, (now - requested) / 1000);
        else telemetry.interToken(specialist.id, (now - last) / 1000);
        last = now;
        inner(delta, detail);
      };
    },

    generated(result: GenerationResult | undefined, failure: unknown): void {
      // A request refused or aborted while queued never started generating.
      queue?.end(failure);
      generation?.setAttributes({
        "gen_ai.usage.input_tokens": result?.promptTokens ?? 0,
        "gen_ai.usage.output_tokens": result?.completionTokens ?? 0,
        "alveare.aborted": result?.aborted ?? false,
      });
      generation?.end(failure);
      generated = { outcome: failure !== undefined ? outcomeOf(failure) : result?.aborted ? "client_closed" : "success", result };
    },

    async metering(written: Promise<void>): Promise<void> {
      const span = trace.span("metering");
      telemetry.ledgerWrites(1);
      try {
        await written;
        span.end();
        if (generated !== undefined) record(generated.outcome, generated.result);
      } catch (error) {
        span.end(error);
        // An outcome that could not be written is not delivered (the client is told so) and counts no tokens.
        record(refusalOf(error));
        throw error;
      } finally {
        telemetry.ledgerWrites(-1);
      }
    },
  };
}
