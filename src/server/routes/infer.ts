import type { FastifyInstance } from "fastify";
import type { InferResponse } from "../../api/types.js";
import type { AppOptions } from "../app.js";
import { ApiError } from "../../errors.js";
import { inferenceId } from "../../ids.js";
import { inferRequest } from "../../api/schemas/infer.js";
import { ignoredFieldsOf } from "../ignored-fields.js";
import { parseBody } from "../../schema/request-errors.js";
import { findSpecialist, runInference } from "../../inference/run-inference.js";
import { inferenceRequest } from "../inference-request.js";

/** The messages here are made from `prompt`: an error about them names the parameter the caller sent. */
function inPromptTerms(error: unknown): never {
  if (error instanceof ApiError && error.param === "messages") {
    throw new ApiError(error.status, error.type, error.code, error.message.replace("'messages'", "'prompt'"), "prompt", error.headers);
  }
  throw error;
}

const sayIgnoredFields = ignoredFieldsOf(inferRequest);

export async function inferRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  app.post("/infer", async (request, reply): Promise<InferResponse> => {
    const started = performance.now();
    const body = parseBody(inferRequest, request.body);
    sayIgnoredFields(request, reply);
    const specialist = findSpecialist(options, body.specialist, "specialist");
    const result = await runInference(options, inferenceRequest(options, request, reply), specialist, "infer", {
      messages: [{ role: "user", content: body.prompt }],
      // null means absent, as for every optional parameter.
      maxTokens: body.max_tokens ?? undefined,
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      seed: body.seed ?? undefined,
    }).catch(inPromptTerms);
    const response: InferResponse = {
      id: inferenceId(),
      specialist: specialist.id,
      result: result.text.trim(),
      tokens_used: result.promptTokens + result.completionTokens,
      latency_ms: Math.round(performance.now() - started),
    };
    // The reference's fields for an answer that simply ended; a cut or refused one says so.
    if (result.finishReason === "length" || result.finishReason === "content_filter") response.finish_reason = result.finishReason;
    if (result.refusal !== undefined) response.refusal = result.refusal;
    const scores = result.labelScores;
    if (scores !== undefined) {
      response.scores = scores;
      // A label cut short by max_tokens is no label: its confidence is 0.
      response.confidence = Object.hasOwn(scores, result.text) ? scores[result.text]! : 0;
    }
    return response;
  });
}
