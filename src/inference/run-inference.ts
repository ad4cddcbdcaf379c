import { MODEL_PREFIX } from "../api/types.js";
import { closest, slipEdits } from "../closest-name.js";
import { ApiError, errors } from "../errors.js";
import type { AbortSource, GenerationRequest, GenerationResult } from "../engines/types.js";
import type { Admission, AdmitOptions, Endpoint, TokenReservation } from "../gate/gate.js";
import { tokenReservation } from "../gate/token-reservation.js";
import { CLIENT_CLOSED } from "../metering/counting-rule.js";
import { observeGeneration } from "../observability/inference-observer.js";
import type { RequestTrace, Telemetry } from "../observability/telemetry.js";
import { toGenerationRequest, type SpecialistCall } from "../specialists/generation.js";
import type { Specialist } from "../specialists/specialist.js";

export interface SpecialistSource {
  get(id: string): Specialist | undefined;
  list(): Specialist[];
}

/** What the use case needs of the node: its specialists, shutdown, telemetry and lifecycle. */
export interface InferenceDeps {
  specialists: SpecialistSource;
  /** Aborted when the server shuts down, so in-flight generations stop. */
  shutdown: AbortSignal;
  telemetry?: Telemetry | undefined;
  /** The node's phase ("draining" refuses new work); always serving when absent. */
  lifecycle?: { readonly current: string } | undefined;
}

/** Fields the one log line of a request carries besides id, route, status and latency. */
export interface LogFields {
  specialist?: string;
  prompt_tokens?: number;
  completion_tokens?: number;
  aborted?: boolean;
  /** Cut at the drain's deadline: the client got 503 `overloaded` (a stream's error event, or the response itself). */
  shutdown_cut?: boolean;
  /** The client stopped reading a stream and was cut. */
  stalled?: boolean;
  code?: string;
  /** The body's top-level fields the route does not read (the alveare-ignored-fields header's value). */
  ignored_fields?: string;
}

/**
 * The error a request the drain's deadline cut is answered, logged and metered as: the server's doing, not the
 * client's, so the 503 its client is told, given back like any server error rather than billed as a 499. Undefined
 * when something else aborted it (a client that left just before the deadline left). Marks the request's log line.
 */
export function shutdownCut(reason: unknown, shutdown: AbortSignal, logFields: LogFields): ApiError | undefined {
  if (!shutdown.aborted || reason !== shutdown.reason) return undefined;
  const cut = errors.cutByShutdown();
  logFields.shutdown_cut = true;
  logFields.code = cut.code;
  return cut;
}

/**
 * One request as the transport that carries it (HTTP today) hands it over:
 * the use case sees neither Fastify's request nor its reply.
 */
export interface InferenceRequest {
  trace: RequestTrace;
  logFields: LogFields;
  logError(error: unknown, message: string): void;
  /** Asks the gate to admit the request; throws the gate's error on a refusal. */
  admit(specialistId: string, endpoint: Endpoint, options: AdmitOptions): Promise<Admission>;
  /** Fires when the client goes away or the server shuts down; asked for once per request, before admission. */
  abort(): AbortSource;
  /** The generation under way, for whatever must wait for its end (the log line). */
  generationStarted(generation: Promise<unknown>): void;
  /**
   * Ends a streamed response the drain's deadline stopped with an error event, so no truncated answer can pass for a
   * whole one. Absent for a whole answer: nothing of it was sent, so the request fails with the cut's 503 `overloaded`.
   */
  cut?: (() => void) | undefined;
}

/** What a route knows of a request beyond the call itself. */
export interface InferenceOptions {
  /** Choices asked for (`n`): each may produce max_tokens, so the token reservation counts each. */
  choices?: number | undefined;
}

/**
 * The path every inference request takes after validation: admission by the
 * gate, generation by the specialist's engine, and exactly one metering record
 * whatever happens, with the tokens actually produced.
 */
export async function runInference(
  options: InferenceDeps,
  request: InferenceRequest,
  specialist: Specialist,
  endpoint: Endpoint,
  call: SpecialistCall,
  inference: InferenceOptions = {},
): Promise<GenerationResult> {
  request.logFields.specialist = specialist.id;
  const observer = observeGeneration(options.telemetry, request.trace, specialist, endpoint);
  // The reservation bounds the prompt as the engine will see it: the specialist's system prompt included.
  const abort = request.abort();
  const generationRequest = toGenerationRequest(specialist, call, abort);
  // Bounding the prompt serialises it: done only when the caller's plan caps tokens.
  // With tools an embedded engine counts the prompt itself: their documentation is no function of their JSON.
  const reserveTokens = (): TokenReservation =>
    tokenReservation(generationRequest, inference.choices ?? 1, specialist.engine.promptTokensWithTools?.(generationRequest));
  const admission = await observer.admission(request.admit(specialist.id, endpoint, { reserveTokens }));
  generationRequest.cacheScope = admission.accountId;
  const started = performance.now();
  let result: GenerationResult | undefined;
  let status = 200;
  let failure: unknown;
  // Admitted while the node began draining: refused like a queued request, and metered as such.
  const generation =
    options.lifecycle?.current === "draining"
      ? Promise.reject(errors.notServing("shutting_down", 1))
      : specialist.engine.generate(withHooks(generationRequest, observer.onText(call.onText), observer.engineHooks()));
  request.generationStarted(generation);
  try {
    result = await generation;
    const cut = result.aborted ? shutdownCut(abort.signal.reason, options.shutdown, request.logFields) : undefined;
    if (cut !== undefined) {
      // No truncated answer may pass for a whole one.
      failure = cut;
      status = cut.status;
      if (request.cut === undefined) throw cut;
      request.cut();
    } else if (result.aborted) status = CLIENT_CLOSED;
    return result;
  } catch (error) {
    failure = error;
    status = error instanceof ApiError ? error.status : 500;
    if (!(error instanceof ApiError)) {
      request.logError(error, "generation failed");
      throw errors.internal();
    }
    throw error;
  } finally {
    request.logFields.prompt_tokens = result?.promptTokens ?? 0;
    request.logFields.completion_tokens = result?.completionTokens ?? 0;
    // `aborted` is a client that left; a shutdown's cut says so in `shutdown_cut` instead.
    if (result?.aborted && request.logFields.shutdown_cut !== true) request.logFields.aborted = true;
    observer.generated(result, failure);
    // Written before the response completes: a request a client saw succeed is in the ledger.
    await observer.metering(
      admission.finish({
        status,
        promptTokens: result?.promptTokens ?? 0,
        completionTokens: result?.completionTokens ?? 0,
        latencyMs: performance.now() - started,
      }),
    );
  }
}

/** The admitted request as the engine gets it, with the observer's callbacks. The object is this request's alone. */
function withHooks(
  request: GenerationRequest,
  onText: GenerationRequest["onText"],
  hooks: Pick<GenerationRequest, "onStarted" | "traceHeaders">,
): GenerationRequest {
  request.onText = onText;
  request.onStarted = hooks.onStarted;
  request.traceHeaders = hooks.traceHeaders;
  return request;
}

/**
 * The specialist a request names. `name` is what the caller wrote: on /v1/infer
 * the bare id, on chat completions the model name with its `alveare-` prefix;
 * a name in the other route's form gets a hint towards the right one.
 */
export function findSpecialist(options: Pick<InferenceDeps, "specialists">, name: string, param: string, prefix = ""): Specialist {
  const id = name.startsWith(prefix) ? name.slice(prefix.length) : undefined;
  const specialist = id === undefined ? undefined : options.specialists.get(id);
  if (specialist?.kind === "embeddings") {
    throw errors.invalidParameter(param, `'${name}' is an embeddings model: call POST /v1/embeddings with it.`);
  }
  if (specialist !== undefined) return specialist;
  throw errors.modelNotFound(name, param, suggestionFor(options, name, prefix));
}

function suggestionFor(options: Pick<InferenceDeps, "specialists">, name: string, prefix: string): string | undefined {
  if (prefix.length > 0 && options.specialists.get(name) !== undefined) return `${prefix}${name}`;
  if (prefix.length === 0 && name.startsWith(MODEL_PREFIX) && options.specialists.get(name.slice(MODEL_PREFIX.length)) !== undefined) {
    return name.slice(MODEL_PREFIX.length);
  }
  // A typo, the other spelling or case (`summarize`, `alveare-clasify`, `ALVEARE-CHAT`): the nearest id within a slip of it.
  const id = name.toLowerCase().startsWith(MODEL_PREFIX) ? name.slice(MODEL_PREFIX.length) : name;
  const near = closest(
    id,
    // Not the embeddings model: chat completions and /v1/infer would refuse it next.
    options.specialists.list().flatMap((s) => (s.kind === "embeddings" ? [] : [s.id])),
    slipEdits(id),
  );
  return near === undefined ? undefined : `${prefix}${near}`;
}
