import type { FastifyInstance } from "fastify";
import { MODEL_PREFIX, type ChatCompletion, ChatCompletionChunk, CompletionUsage } from "../../api/types.js";
import { ApiError, errors } from "../../errors.js";
import type { GenerationResult } from "../../engines/types.js";
import type { ToolCallDelta } from "../../engines/tools.js";
import type { AppOptions } from "../app.js";
import { completionId } from "../../ids.js";
import { EventStream } from "../sse.js";
import { assistantMessage, toolCallChunkDelta } from "./tool-response.js";
import { parseChatRequest } from "./chat-request.js";
import { findSpecialist, runInference } from "../../inference/run-inference.js";
import { inferenceRequest } from "../inference-request.js";

const usageOf = (r: GenerationResult): CompletionUsage => ({
  prompt_tokens: r.promptTokens,
  completion_tokens: r.completionTokens,
  total_tokens: r.promptTokens + r.completionTokens,
});

export async function chatCompletionsRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  app.post("/chat/completions", async (request, reply) => {
    const body = parseChatRequest(request.body);
    const specialist = findSpecialist(options, body.model, "model", MODEL_PREFIX);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const call = {
      messages: body.messages,
      maxTokens: body.maxTokens,
      temperature: body.temperature,
      topP: body.topP,
      seed: body.seed,
      stop: body.stop,
      constraint: body.constraint,
      tools: body.tools,
    };

    if (!body.stream) {
      const result = await runInference(options, inferenceRequest(options, request, reply), specialist, "chat.completions", call);
      const completion: ChatCompletion = {
        id,
        object: "chat.completion",
        created,
        model: body.model,
        choices: [{ index: 0, message: assistantMessage(result), finish_reason: result.finishReason }],
        usage: usageOf(result),
      };
      return completion;
    }

    const stream = new EventStream(reply);
    const chunk = (
      delta: ChatCompletionChunk["choices"][number]["delta"],
      finish: ChatCompletionChunk["choices"][number]["finish_reason"],
    ): ChatCompletionChunk => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: body.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...(body.includeUsage ? { usage: null } : {}),
    });
    let first = true;
    const sendText = (text: string): void => {
      stream.send(chunk(first ? { role: "assistant", content: text } : { content: text }, null));
      first = false;
    };
    const sendToolCall = (delta: ToolCallDelta): void => {
      stream.send(chunk(toolCallChunkDelta(delta, first), null));
      first = false;
    };
    try {
      const result = await runInference(options, inferenceRequest(options, request, reply), specialist, "chat.completions", {
        ...call,
        onText: sendText,
        onToolCall: sendToolCall,
      });
      if (result.aborted) return reply;
      if (first) sendText("");
      stream.send(chunk({}, result.finishReason));
      if (body.includeUsage) {
        stream.send({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage: usageOf(result) });
      }
      stream.done();
    } catch (error) {
      if (!stream.isStarted) throw error;
      stream.fail(error instanceof ApiError ? error : errors.internal());
    }
    return reply;
  });
}
