import type { FastifyReply, FastifyRequest } from "fastify";
import { MODEL_PREFIX } from "../../api/types.js";
import { ApiError, errors } from "../../errors.js";
import type { GenerationResult } from "../../engines/types.js";
import type { Endpoint } from "../../gate/gate.js";
import { toGenerationRequest, type SpecialistCall } from "../../specialists/generation.js";
import type { Specialist } from "../../specialists/specialist.js";
import type { AppOptions } from "../app.js";
import { requestSignal } from "../request-context.js";

/** Status recorded for a client that went away before its answer (nginx's convention). */
export const CLIENT_CLOSED = 499;

/**
 * The path every inference request takes after validation: admission by the
 * gate, generation by the specialist's engine, and exactly one metering record
 * whatever happens, with the tokens actually produced.
 */
export async function runInference(
  options: AppOptions,
  request: FastifyRequest,
  reply: FastifyReply,
  specialist: Specialist,
  endpoint: Endpoint,
  call: Omit<SpecialistCall, "signal">,
): Promise<GenerationResult> {
  request.logFields.specialist = specialist.id;
  const admission = await options.gate.admit(request, reply, request.caller, specialist.id, endpoint);
  const signal = requestSignal(reply, options.shutdown);
  const started = performance.now();
  let result: GenerationResult | undefined;
  let status = 200;
  const generation = specialist.engine.generate(toGenerationRequest(specialist, { ...call, signal }));
  request.generationDone = generation;
  try {
    result = await generation;
    if (result.aborted) status = CLIENT_CLOSED;
    return result;
  } catch (error) {
    status = error instanceof ApiError ? error.status : 500;
    if (!(error instanceof ApiError)) {
      request.log.error({ err: error }, "generation failed");
      throw errors.internal();
    }
    throw error;
  } finally {
    request.logFields.prompt_tokens = result?.promptTokens ?? 0;
    request.logFields.completion_tokens = result?.completionTokens ?? 0;
    if (result?.aborted) request.logFields.aborted = true;
    // Written before the response completes: a request a client saw succeed is in the ledger.
    await admission.finish({
      status,
      promptTokens: result?.promptTokens ?? 0,
      completionTokens: result?.completionTokens ?? 0,
      latencyMs: performance.now() - started,
    });
  }
}

/**
 * The specialist a request names. `name` is what the caller wrote: on /v1/infer
 * the bare id, on chat completions the model name with its `alveare-` prefix;
 * a name in the other route's form gets a hint towards the right one.
 */
export function findSpecialist(options: AppOptions, name: string, param: string, prefix = ""): Specialist {
  const id = name.startsWith(prefix) ? name.slice(prefix.length) : undefined;
  const specialist = id === undefined ? undefined : options.specialists.get(id);
  if (specialist?.kind === "embeddings") {
    throw errors.invalidParameter(param, `'${name}' is an embeddings model: call POST /v1/embeddings with it.`);
  }
  if (specialist !== undefined) return specialist;
  throw errors.modelNotFound(name, param, suggestionFor(options, name, prefix));
}

function suggestionFor(options: AppOptions, name: string, prefix: string): string | undefined {
  if (prefix.length > 0) return options.specialists.get(name) === undefined ? undefined : `${prefix}${name}`;
  return name.startsWith(MODEL_PREFIX) && options.specialists.get(name.slice(MODEL_PREFIX.length)) !== undefined
    ? name.slice(MODEL_PREFIX.length)
    : undefined;
}
