import type { FastifyInstance } from "fastify";
import { MODEL_PREFIX, type ChatCompletion, ChatCompletionChunk, type ChatCompletionLogprobs, CompletionUsage } from "../../api/types.js";
import { ApiError, errors } from "../../errors.js";
import type { GenerationResult, TextDetail, TokenLogprob } from "../../engines/types.js";
import type { ToolCallDelta } from "../../engines/tools.js";
import type { AppOptions } from "../app.js";
import { completionId } from "../../ids.js";
import { EventStream } from "../sse.js";
import { reportFailure } from "../dependency-failure.js";
import { dependencyFailure } from "../../dependency-unavailable.js";
import { NO_TELEMETRY } from "../../observability/telemetry.js";
import { DEFAULT_HTTP_LIMITS } from "../../config/config.js";
import { assistantMessage, toolCallChunkDelta } from "./tool-response.js";
import { parseChatRequest } from "./chat-request.js";
import { chatCompletionRequest } from "../../api/schemas/chat-completions.js";
import { ignoredFieldsOf } from "../ignored-fields.js";
import { findSpecialist, runInference } from "../../inference/run-inference.js";
import { inferenceRequest } from "../inference-request.js";

const usageOf = (r: GenerationResult): CompletionUsage => ({
  prompt_tokens: r.promptTokens,
  completion_tokens: r.completionTokens,
  total_tokens: r.promptTokens + r.completionTokens,
  // OpenAI's field: how much of the prompt its cache served (this account's own, or the specialist's system prompt).
  ...(r.cachedPromptTokens === undefined ? {} : { prompt_tokens_details: { cached_tokens: r.cachedPromptTokens } }),
});

/** Token log-probabilities in OpenAI's shape. */
function logprobsOf(entries: readonly TokenLogprob[] | undefined): ChatCompletionLogprobs {
  return {
    content: (entries ?? []).map((e) => ({
      token: e.token,
      logprob: e.logprob,
      bytes: e.bytes,
      top_logprobs: e.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
    })),
    refusal: null,
  };
}

const sayIgnoredFields = ignoredFieldsOf(chatCompletionRequest);

export async function chatCompletionsRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  app.post("/chat/completions", async (request, reply) => {
    const body = parseChatRequest(request.body);
    sayIgnoredFields(request, reply);
    const specialist = findSpecialist(options, body.model, "model", MODEL_PREFIX);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const wantsLogprobs = body.topLogprobs !== undefined;
    const call = {
      messages: body.messages,
      maxTokens: body.maxTokens,
      temperature: body.temperature,
      topP: body.topP,
      seed: body.seed,
      stop: body.stop,
      constraint: body.constraint,
      tools: body.tools,
      shownTools: body.shownTools,
      choices: body.choices,
      topLogprobs: body.topLogprobs,
    };
    const inference = { choices: body.choices };

    if (!body.stream) {
      const result = await runInference(options, inferenceRequest(options, request, reply), specialist, "chat.completions", call, inference);
      const choices = result.choices ?? [result];
      const completion: ChatCompletion = {
        id,
        object: "chat.completion",
        created,
        model: body.model,
        choices: choices.map((choice, index) => ({
          index,
          message: assistantMessage(index === 0 ? result : choice),
          logprobs: wantsLogprobs ? logprobsOf(choice.logprobs) : null,
          finish_reason: choice.finishReason,
        })),
        usage: usageOf(result),
      };
      return completion;
    }

    const stream = new EventStream(reply, (options.http ?? DEFAULT_HTTP_LIMITS).streamStallMs, () => {
      request.logFields.stalled = true;
    });
    type Choice = ChatCompletionChunk["choices"][number];
    const chunk = (
      index: number,
      delta: Choice["delta"],
      finish: Choice["finish_reason"],
      logprobs?: readonly TokenLogprob[],
    ): ChatCompletionChunk => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: body.model,
      choices: [{ index, delta, ...(wantsLogprobs ? { logprobs: finish === null ? logprobsOf(logprobs) : null } : {}), finish_reason: finish }],
      ...(body.includeUsage ? { usage: null } : {}),
    });
    // Each choice opens with a chunk of its own that names the role and carries no token, as OpenAI's
    // streams do: the openai SDK's stream helper copies a choice's first log-probabilities and then
    // appends them again, so a first chunk with a token would have it twice in the final completion.
    const started = new Set<number>();
    const open = (index: number, content: "" | null): void => {
      if (started.has(index)) return;
      started.add(index);
      stream.send(chunk(index, { role: "assistant", content }, null, []));
    };
    const sendText = (text: string, detail?: TextDetail): void => {
      const index = detail?.choice ?? 0;
      open(index, "");
      stream.send(chunk(index, detail?.refusal === true ? { refusal: text } : { content: text }, null, detail?.logprobs));
    };
    const sendToolCall = (delta: ToolCallDelta, detail?: TextDetail): void => {
      open(0, null);
      stream.send(chunk(0, toolCallChunkDelta(delta), null, detail?.logprobs));
    };
    try {
      const result = await runInference(
        options,
        // Cut by the drain: the stream ends with an error event a client can tell from a network failure.
        inferenceRequest(options, request, reply, () => stream.cut(errors.cutByShutdown())),
        specialist,
        "chat.completions",
        { ...call, onText: sendText, onToolCall: sendToolCall, whenWritable: () => stream.whenWritable() },
        inference,
      );
      if (result.aborted) return reply;
      const choices = result.choices ?? [result];
      choices.forEach((choice, index) => {
        open(index, "");
        stream.send(chunk(index, {}, choice.finishReason));
      });
      if (body.includeUsage) {
        stream.send({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage: usageOf(result) });
      }
      stream.done();
    } catch (error) {
      if (!stream.isStarted) throw error;
      // A database lost at the end (the completion could not be recorded) ends the stream with the 503 a client retries.
      const failure = error instanceof ApiError ? error : (dependencyFailure(error) ?? errors.internal());
      // The status went out as 200: the request line's code is what tells this stream failed.
      request.logFields.code = failure.code;
      if (!reportFailure(failure, request.log, options.telemetry ?? NO_TELEMETRY, options.logger) && !(error instanceof ApiError)) {
        request.log.error({ err: error }, "unhandled error");
      }
      stream.fail(failure);
    }
    return reply;
  });
}
