import { Type } from "@sinclair/typebox";
import { StringEnum } from "../../schema/builders.js";

/**
 * Response bodies of the public routes. They describe what the server sends
 * (the OpenAPI document and the tests read them); they validate nothing at
 * run time. Objects stay open to extra properties, as OpenAI's are, so a
 * client written against them keeps working when a field is added.
 */

export const ERROR_TYPES = ["invalid_request_error", "authentication_error", "permission_error", "rate_limit_error", "server_error"] as const;

/** The one error shape of every route, the error catalogue's. */
export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object(
      {
        message: Type.String({ description: "What went wrong and what to do about it, for people." }),
        type: StringEnum(ERROR_TYPES),
        code: Type.String({ description: "The catalogue code, for programs: e.g. invalid_parameter, rate_limit_exceeded." }),
        param: Type.Union([Type.String(), Type.Null()], { description: "The request parameter at fault, or null." }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, title: "Error" },
);

/** GET /health: liveness. */
export const HealthSchema = Type.Object(
  {
    status: Type.Literal("ok"),
    version: Type.String(),
    uptime_seconds: Type.Integer({ minimum: 0 }),
  },
  { title: "Health" },
);

/** GET /ready: 200 when ready, 503 naming what is missing otherwise. */
export const ReadinessSchema = Type.Object(
  {
    status: StringEnum(["ready", "not_ready"] as const),
    checks: Type.Record(Type.String(), Type.Unknown(), {
      description: "One entry per dependency (engines, remote upstream pools, database, Redis in the shared mode) saying whether it is ready.",
    }),
  },
  { title: "Readiness" },
);

export const ModelSchema = Type.Object(
  {
    id: Type.String({ description: "alveare-<specialist id>" }),
    object: Type.Literal("model"),
    created: Type.Integer({ description: "Unix seconds: when this server started serving the model." }),
    owned_by: Type.Literal("alveare"),
  },
  { title: "Model" },
);

/** GET /v1/models */
export const ModelListSchema = Type.Object({ object: Type.Literal("list"), data: Type.Array(ModelSchema) }, { title: "ModelList" });

const Count = (description?: string) => Type.Integer({ minimum: 0, ...(description === undefined ? {} : { description }) });

/** POST /v1/infer */
export const InferResponseSchema = Type.Object(
  {
    id: Type.String(),
    specialist: Type.String(),
    result: Type.String({ description: "The specialist's answer." }),
    tokens_used: Count("Prompt and completion tokens together."),
    latency_ms: Type.Number({ minimum: 0 }),
    scores: Type.Optional(
      Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 1 }), {
        description:
          "Specialists whose output is a label (classify): every label's probability, from the model's own probabilities of the label's tokens, normalised over the labels (they sum to 1).",
      }),
    ),
    confidence: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: "With scores: the chosen label's score." })),
    finish_reason: Type.Optional(
      StringEnum(["length", "content_filter"] as const, {
        description:
          'Only when the answer did not simply end: "length" when max_tokens cut it, "content_filter" when a remote upstream\'s filter cut it.',
      }),
    ),
    refusal: Type.Optional(Type.String({ description: "A remote upstream's refusal (OpenAI's structured outputs), in place of a result." })),
  },
  { title: "InferResponse" },
);

export const CompletionUsageSchema = Type.Object(
  {
    prompt_tokens: Count(),
    completion_tokens: Count(),
    total_tokens: Count(),
    prompt_tokens_details: Type.Optional(
      Type.Object(
        {
          cached_tokens: Count(
            "Prompt tokens served from the engine's cache rather than evaluated: the specialist's system prompt, and what this account's own earlier requests left there.",
          ),
        },
        { description: "Present where the engine knows (an embedded model; a remote upstream that reports it)." },
      ),
    ),
  },
  { title: "CompletionUsage" },
);

const FinishReason = StringEnum(["stop", "length", "tool_calls", "content_filter"] as const, {
  description:
    '"tool_calls" when the answer is tool calls; "length" when max_tokens cut it (a cut call\'s arguments may be incomplete JSON); "content_filter" when a remote upstream\'s filter cut it.',
});

/** A tool call in an answer: `arguments` is JSON text matching the function's parameters schema. */
export const ToolCallSchema = Type.Object(
  {
    id: Type.String(),
    type: Type.Literal("function"),
    function: Type.Object({ name: Type.String(), arguments: Type.String({ description: "JSON text of the call's arguments." }) }),
  },
  { title: "ToolCall" },
);

/** A piece of a streamed tool call: the first of each call carries id, type and name; later ones more arguments text. */
const ChunkToolCallSchema = Type.Object({
  index: Count("Which call of the answer this piece belongs to."),
  id: Type.Optional(Type.String()),
  type: Type.Optional(Type.Literal("function")),
  function: Type.Object({ name: Type.Optional(Type.String()), arguments: Type.String() }),
});

const TokenAlternativeFields = {
  token: Type.String(),
  logprob: Type.Number({ description: "The model's own log-probability: log-softmax of its logits, before temperature, top-p and grammar." }),
  bytes: Type.Union([Type.Array(Type.Integer({ minimum: 0, maximum: 255 })), Type.Null()], { description: "The token's UTF-8 bytes." }),
};

/** `choices[].logprobs` when `logprobs` is true: one entry per generated token. */
export const ChoiceLogprobsSchema = Type.Object(
  {
    content: Type.Union([
      Type.Array(
        Type.Object({
          ...TokenAlternativeFields,
          top_logprobs: Type.Array(Type.Object(TokenAlternativeFields), {
            description: "The `top_logprobs` most likely tokens at this position, most likely first.",
          }),
        }),
      ),
      Type.Null(),
    ]),
    refusal: Type.Null({ description: "Always null." }),
  },
  { title: "ChoiceLogprobs" },
);

const Logprobs = Type.Union([ChoiceLogprobsSchema, Type.Null()], { description: "Null unless `logprobs` was true." });

/** POST /v1/chat/completions without `stream` */
export const ChatCompletionSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal("chat.completion"),
    created: Type.Integer({ description: "Unix seconds." }),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Count(),
        message: Type.Object({
          role: Type.Literal("assistant"),
          content: Type.Union([Type.String(), Type.Null()], {
            description: "Null when the answer is tool calls alone (a remote upstream may write text before its calls).",
          }),
          refusal: Type.Union([Type.String(), Type.Null()], {
            description: "A remote upstream's refusal (OpenAI's structured outputs), content then null; otherwise null.",
          }),
          tool_calls: Type.Optional(Type.Array(ToolCallSchema)),
        }),
        logprobs: Logprobs,
        finish_reason: FinishReason,
      }),
    ),
    usage: CompletionUsageSchema,
  },
  { title: "ChatCompletion" },
);

/**
 * One `data:` event of POST /v1/chat/completions with `"stream": true`. The
 * stream ends with `data: [DONE]`; an error after it started arrives as one
 * event with the error body instead.
 */
export const ChatCompletionChunkSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal("chat.completion.chunk"),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(
      Type.Object({
        index: Count(),
        delta: Type.Object({
          role: Type.Optional(Type.Literal("assistant")),
          content: Type.Optional(Type.Union([Type.String(), Type.Null()])),
          refusal: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: "A piece of a remote upstream's refusal." })),
          tool_calls: Type.Optional(Type.Array(ChunkToolCallSchema)),
        }),
        logprobs: Type.Optional(Logprobs),
        finish_reason: Type.Union([FinishReason, Type.Null()]),
      }),
    ),
    usage: Type.Optional(
      Type.Union([CompletionUsageSchema, Type.Null()], { description: "Only on the last chunk, with stream_options.include_usage." }),
    ),
  },
  { title: "ChatCompletionChunk" },
);

/** GET /v1/usage, and an account's usage in the admin API. */
export const UsageSchema = Type.Object(
  {
    period_start: Type.String({ format: "date-time" }),
    period_end: Type.String({ format: "date-time" }),
    requests_used: Count(),
    requests_limit: Count(),
    tokens_used: Count(),
    by_specialist: Type.Record(Type.String(), Count(), { description: "Requests per specialist id this period." }),
  },
  { title: "Usage" },
);

/** POST /v1/embeddings */
export const CreateEmbeddingResponseSchema = Type.Object(
  {
    object: Type.Literal("list"),
    data: Type.Array(
      Type.Object({
        object: Type.Literal("embedding"),
        index: Count("The input's position."),
        embedding: Type.Union([Type.Array(Type.Number()), Type.String()], {
          description: 'Numbers for encoding_format "float"; for "base64", the little-endian float32 values\' bytes in base64.',
        }),
      }),
    ),
    model: Type.String(),
    usage: Type.Object({ prompt_tokens: Count(), total_tokens: Count() }),
  },
  { title: "CreateEmbeddingResponse" },
);
