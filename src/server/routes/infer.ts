import type { FastifyInstance } from "fastify";
import type { InferRequest, InferResponse } from "../../api/types.js";
import { errors } from "../../errors.js";
import type { AppOptions } from "../app.js";
import { inferenceId } from "../ids.js";
import { bodyObject, optionalNumber, requiredString, SAMPLING } from "../validate.js";
import { findSpecialist, runInference } from "./run-inference.js";

function parseInferRequest(body: unknown): InferRequest {
  const o = bodyObject(body);
  const request: InferRequest = {
    specialist: requiredString(o, "specialist"),
    prompt: requiredString(o, "prompt"),
  };
  if (request.prompt.length === 0) throw errors.invalidParameter("prompt", "must not be empty.");
  const maxTokens = optionalNumber(o, "max_tokens", SAMPLING.maxTokens);
  const temperature = optionalNumber(o, "temperature", SAMPLING.temperature);
  const topP = optionalNumber(o, "top_p", SAMPLING.topP);
  const seed = optionalNumber(o, "seed", SAMPLING.seed);
  if (maxTokens !== undefined) request.max_tokens = maxTokens;
  if (temperature !== undefined) request.temperature = temperature;
  if (topP !== undefined) request.top_p = topP;
  if (seed !== undefined) request.seed = seed;
  return request;
}

export async function inferRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  app.post("/infer", async (request, reply): Promise<InferResponse> => {
    const started = performance.now();
    const body = parseInferRequest(request.body);
    const specialist = findSpecialist(options, body.specialist, "specialist");
    const result = await runInference(options, request, reply, specialist, "infer", {
      messages: [{ role: "user", content: body.prompt }],
      maxTokens: body.max_tokens,
      temperature: body.temperature,
      topP: body.top_p,
      seed: body.seed,
    });
    return {
      id: inferenceId(),
      specialist: specialist.id,
      result: result.text.trim(),
      tokens_used: result.promptTokens + result.completionTokens,
      latency_ms: Math.round(performance.now() - started),
    };
  });
}
