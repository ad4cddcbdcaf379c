import { chatCompletionRequest, METADATA_RULE, type ChatCompletionRequestBody } from "../../api/schemas/chat-completions.js";
import type { ChatMessage, OutputConstraint } from "../../engines/types.js";
import { errors } from "../../errors.js";
import { parseBody } from "../../schema/request-errors.js";
import { checkJsonSchemaLimits } from "../json-schema-limits.js";
import type { ToolFunction, ToolRequest } from "../../engines/tools.js";
import { parseToolRequest, toChatMessages } from "./tool-request.js";

/** A validated chat completion request in the terms the specialist layer uses. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  topP?: number | undefined;
  seed?: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  constraint?: OutputConstraint | undefined;
  tools?: ToolRequest | undefined;
  /** Tools shown to the model but not callable (tool_choice "none"). */
  shownTools?: readonly ToolFunction[] | undefined;
  /** Choices to generate (`n`). */
  choices: number;
  /** Alternatives per token when `logprobs` is true; undefined when log-probabilities are not asked for. */
  topLogprobs?: number | undefined;
}

/** top_logprobs only with logprobs: true, as OpenAI requires; with logprobs, 0 alternatives unless named. */
function parseLogprobs(o: ChatCompletionRequestBody): number | undefined {
  const top = o.top_logprobs ?? undefined;
  if (o.logprobs !== true) {
    if (top !== undefined) throw errors.invalidParameter("top_logprobs", "is only allowed when 'logprobs' is true.");
    return undefined;
  }
  return top ?? 0;
}

/** stream_options only with stream: true, as OpenAI requires. */
function parseIncludeUsage(o: ChatCompletionRequestBody): boolean {
  const options = o.stream_options ?? undefined;
  if (options !== undefined && o.stream !== true) throw errors.invalidParameter("stream_options", "is only allowed when 'stream' is true.");
  return options?.include_usage ?? false;
}

function toConstraint(format: ChatCompletionRequestBody["response_format"]): OutputConstraint | undefined {
  switch (format?.type) {
    case "json_object":
      return { type: "json_object" };
    case "json_schema":
      checkJsonSchemaLimits(format.json_schema.schema, "response_format.json_schema.schema");
      return {
        type: "json_schema",
        schema: format.json_schema.schema,
        name: format.json_schema.name,
        description: format.json_schema.description ?? undefined,
        strict: format.json_schema.strict ?? undefined,
      };
    default:
      return undefined;
  }
}

/**
 * OpenAI's deprecated `functions` and `function_call` (the SDK still types
 * them): served as plain text they would be a silent wrong answer to a client
 * waiting for a call, so they are refused with the form to use instead.
 */
function refuseLegacyFunctions(body: unknown): void {
  for (const [field, instead] of [
    ["functions", '\'tools\' (each function as {"type": "function", "function": {...}})'],
    ["function_call", "'tool_choice'"],
  ] as const) {
    const value = (body as Record<string, unknown>)[field];
    if (value !== undefined && value !== null) throw errors.invalidParameter(field, `is OpenAI's deprecated form: send ${instead} instead.`);
  }
}

/**
 * Audio output is not generated: a client that asks for it would read `message.audio` and find none, so the
 * request is refused rather than answered with text alone (as `functions` is, above).
 */
function refuseAudioOutput(o: ChatCompletionRequestBody): void {
  if (o.modalities?.includes("audio") === true)
    throw errors.invalidParameter("modalities", 'only text output is served: send ["text"] or leave it out.');
  if (o.audio !== undefined && o.audio !== null) throw errors.invalidParameter("audio", "audio output is not served: leave it out.");
}

/** metadata as OpenAI takes it (then unused): at most 16 pairs, keys up to 64 characters, values strings up to 512. */
function checkMetadata(o: ChatCompletionRequestBody): void {
  const entries = Object.entries(o.metadata ?? {});
  const fits = ([key, value]: [string, unknown]) => key.length <= 64 && typeof value === "string" && value.length <= 512;
  if (entries.length > 16 || !entries.every(fits)) throw errors.invalidParameter("metadata", METADATA_RULE);
}

/** logit_bias is keyed by token ids, as OpenAI checks it (a word there is refused, though the bias is then ignored). */
function checkLogitBias(o: ChatCompletionRequestBody): void {
  const bias = o.logit_bias ?? {};
  if (Object.keys(bias).some((key) => !/^[0-9]+$/.test(key))) {
    throw errors.invalidParameter("logit_bias", "its keys must be token ids (non-negative integers, written as strings).");
  }
}

export function parseChatRequest(body: unknown): ChatRequest {
  const o = parseBody(chatCompletionRequest, body);
  refuseLegacyFunctions(o);
  refuseAudioOutput(o);
  checkMetadata(o);
  checkLogitBias(o);
  const { callable: tools, shown: shownTools } = parseToolRequest(o);
  const choices = o.n ?? 1;
  // Several answers that each may be tool calls would need calls told apart per choice; not served (yet).
  if (choices > 1 && tools !== undefined) throw errors.invalidParameter("n", "must be 1 when 'tools' are given (unless tool_choice is \"none\").");
  return {
    model: o.model,
    messages: toChatMessages(o.messages),
    // max_completion_tokens is OpenAI's current name; max_tokens the deprecated one, which it replaces when both are sent.
    maxTokens: o.max_completion_tokens ?? o.max_tokens ?? undefined,
    temperature: o.temperature ?? undefined,
    topP: o.top_p ?? undefined,
    seed: o.seed ?? undefined,
    stop: o.stop === undefined || o.stop === null ? [] : typeof o.stop === "string" ? [o.stop] : o.stop,
    stream: o.stream ?? false,
    includeUsage: parseIncludeUsage(o),
    constraint: toConstraint(o.response_format),
    tools,
    shownTools,
    choices,
    topLogprobs: parseLogprobs(o),
  };
}
