import { setImmediate as nextTurn } from "node:timers/promises";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { MODEL_PREFIX } from "../../api/types.js";
import { embeddingsRequest } from "../../api/schemas/embeddings.js";
import { ignoredFieldsOf } from "../ignored-fields.js";
import type { Embedder, EmbeddingResult } from "../../engines/embedded/embeddings.js";
import { normalise } from "../../engines/embedded/embeddings.js";
import { ApiError, errors } from "../../errors.js";
import { parseBody } from "../../schema/request-errors.js";
import type { Specialist } from "../../specialists/specialist.js";
import type { AppOptions } from "../app.js";
import { requestSignal } from "../request-context.js";
import { admitRequest } from "../gate-adapter.js";
import { promptTokenBound } from "../../gate/token-reservation.js";
import { CLIENT_CLOSED } from "../../metering/counting-rule.js";
import { observeGeneration } from "../../observability/inference-observer.js";
import { shutdownCut } from "../../inference/run-inference.js";

/** OpenAI's base64 encoding: the float32 values' little-endian bytes. */
export function toBase64(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString("base64");
}

/**
 * The first `dimensions` values rescaled to unit length (OpenAI's `dimensions`),
 * rounded to float32 so that "float" and "base64" carry the very same numbers.
 */
export function shapeVector(vector: readonly number[], dimensions: number | undefined): number[] {
  const kept = dimensions === undefined ? vector : normalise(vector.slice(0, dimensions));
  return kept.map((x) => Math.fround(x));
}

/** About 4 ms of writing numbers as JSON on a slow core: the most one slice of the answer holds the event loop. */
const NUMBERS_PER_SLICE = 32_768;

/**
 * The answer as JSON, written a slice of vectors per event-loop turn: 2,048 vectors of 896 floats take ~250 ms
 * to shape and write, which in one piece would hold every other request on the node that long. The text is what
 * JSON.stringify makes of the whole answer.
 */
export async function embeddingsJson(
  vectors: readonly (readonly number[])[],
  dimensions: number | undefined,
  base64: boolean,
  model: string,
  promptTokens: number,
): Promise<string> {
  const parts: string[] = [];
  let written = 0;
  for (let index = 0; index < vectors.length; index++) {
    const shaped = shapeVector(vectors[index]!, dimensions);
    parts.push(JSON.stringify({ object: "embedding", index, embedding: base64 ? toBase64(shaped) : shaped }));
    written += shaped.length;
    if (written >= NUMBERS_PER_SLICE && index < vectors.length - 1) {
      written = 0;
      await nextTurn();
    }
  }
  const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens };
  return `{"object":"list","data":[${parts.join(",")}],"model":${JSON.stringify(model)},"usage":${JSON.stringify(usage)}}`;
}

function findEmbedder(options: AppOptions, name: string): { specialist: Specialist; embedder: Embedder } {
  const id = name.startsWith(MODEL_PREFIX) ? name.slice(MODEL_PREFIX.length) : undefined;
  const specialist = id === undefined ? undefined : options.specialists.get(id);
  if (specialist === undefined) {
    // A bare specialist id gets a hint, but only towards a model this route serves.
    const embeds = options.specialists.get(name)?.embedder !== undefined;
    throw errors.modelNotFound(name, "model", embeds ? `${MODEL_PREFIX}${name}` : undefined);
  }
  if (specialist.embedder === undefined) {
    throw errors.invalidParameter(
      "model",
      `'${name}' is not an embeddings model; GET /v1/models lists the models you can use (e.g. '${MODEL_PREFIX}embed').`,
    );
  }
  return { specialist, embedder: specialist.embedder };
}

/**
 * Admission, embedding and exactly one metering record, as inference requests
 * have, with the same metrics and spans. Each input is reserved at its token
 * bound (at most the context) and settled to the real count.
 */
async function runEmbedding(
  options: AppOptions,
  request: FastifyRequest,
  reply: FastifyReply,
  specialist: Specialist,
  embedder: Embedder,
  inputs: readonly string[],
): Promise<EmbeddingResult> {
  request.logFields.specialist = specialist.id;
  const observer = observeGeneration(options.telemetry, request.trace, specialist, "embeddings");
  const reserveTokens = {
    promptTokens: inputs.reduce((sum, text) => sum + promptTokenBound([text], specialist.contextSize), 0),
    completionTokens: 0,
  };
  const admission = await observer.admission(admitRequest(options.gate, request, reply, specialist.id, "embeddings", { reserveTokens }));
  const signal = requestSignal(request, options.shutdown);
  const started = performance.now();
  let result: EmbeddingResult | undefined;
  let status = 200;
  let failure: unknown;
  const work = options.lifecycle?.current === "draining" ? Promise.reject(errors.notServing("shutting_down", 1)) : embedder.embed(inputs, signal);
  request.generationDone = work;
  try {
    result = await work;
    if (result.aborted !== true && !signal.aborted) return result;
    const cut = shutdownCut(signal.reason, options.shutdown, request.logFields);
    if (cut !== undefined) {
      // Nothing of the answer was sent: its client is told the cut's 503 (thrown below), as a whole chat answer's is.
      failure = cut;
      status = cut.status;
    } else {
      // Its client gone before the answer: metered as a 499 with the inputs embedded.
      status = CLIENT_CLOSED;
      request.logFields.aborted = true;
    }
  } catch (error) {
    failure = error;
    status = error instanceof ApiError ? error.status : 500;
    if (error instanceof ApiError) throw error;
    request.log.error({ err: error }, "embedding failed");
    throw errors.internal();
  } finally {
    const promptTokens = result?.promptTokens ?? 0;
    request.logFields.prompt_tokens = promptTokens;
    request.logFields.completion_tokens = 0;
    observer.generated(
      result === undefined ? undefined : { text: "", promptTokens, completionTokens: 0, finishReason: "stop", aborted: status === CLIENT_CLOSED },
      failure,
    );
    await observer.metering(admission.finish({ status, promptTokens, completionTokens: 0, latencyMs: performance.now() - started }));
  }
  // Only a cut request gets here: the drain's 503 for its client, or a client gone (the log line says 499).
  throw failure ?? errors.internal();
}

const sayIgnoredFields = ignoredFieldsOf(embeddingsRequest);

export async function embeddingsRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  app.post("/embeddings", async (request, reply): Promise<FastifyReply> => {
    const body = parseBody(embeddingsRequest, request.body);
    sayIgnoredFields(request, reply);
    const { specialist, embedder } = findEmbedder(options, body.model);
    const dimensions = body.dimensions ?? undefined;
    if (dimensions !== undefined && dimensions > embedder.dimensions) {
      // A key that may not use this model hears that (401/403, counting nothing), not the length of its vectors.
      if (!options.gate.allows(request.caller, specialist.id)) {
        // Admitted after all where the key's plan changed since it was checked (a slow upload): finished as the 400
        // it gets, which counts nothing; left open, its place (a slot, a token reservation) was held for good.
        const admission = await admitRequest(options.gate, request, reply, specialist.id, "embeddings");
        await admission.finish({ status: 400, promptTokens: 0, completionTokens: 0, latencyMs: 0 });
      }
      throw errors.invalidParameter("dimensions", `must be at most ${embedder.dimensions}, the length of this model's vectors.`);
    }
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    const result = await runEmbedding(options, request, reply, specialist, embedder, inputs);
    const json = await embeddingsJson(result.vectors, dimensions, body.encoding_format === "base64", body.model, result.promptTokens);
    return reply.type("application/json; charset=utf-8").send(json);
  });
}
