import { Type, type Static } from "@sinclair/typebox";
import { Nullable, problem, StringEnum, TaggedUnion } from "../../schema/builders.js";
import { compileSchema } from "../../schema/compile.js";
import { MaxTokens, Seed, Temperature, TopP } from "./sampling.js";
import { MessageToolCall, ParallelToolCalls, ToolChoice, Tools } from "./tools.js";

/** The most choices (`n`) one request may ask for. */
export const MAX_CHOICES = 8;
/** The most alternatives per token `top_logprobs` may ask for, as OpenAI allows. */
export const MAX_TOP_LOGPROBS = 20;
/**
 * Messages in one request, as Azure OpenAI allows. Formatting a conversation costs its chat template
 * per message, whatever the message holds (~12 µs each on the embedded engine's templates): 30,000
 * one-letter messages in a 1 MB body held the event loop 0.3–0.5 s before the prompt could be refused.
 */
export const MAX_MESSAGES = 2048;
/**
 * Tool calls a conversation may replay, all assistant turns together: each costs its template ~30 µs, so 13,000
 * `{}` calls in one message held the event loop 0.4 s. A history of 2,048 messages holds at most 1,024
 * call-and-result pairs.
 */
export const MAX_REPLAYED_TOOL_CALLS = 1024;

/** `developer` is OpenAI's newer name for `system`. */
export const CHAT_ROLES = ["system", "developer", "user", "assistant", "tool"] as const;

/** A `refusal` part is an assistant's own (clients replay answers that refused); where it may stand is checked where messages are parsed. */
const ContentPart = TaggedUnion(
  "type",
  [Type.Object({ type: Type.Literal("text"), text: Type.String() }), Type.Object({ type: Type.Literal("refusal"), refusal: Type.String() })],
  problem("only parts of type 'text' are supported."),
);

/** An array holds at least one part, as OpenAI requires (an empty one is no message: send "" or, on an assistant turn, null). */
const MessageContent = Type.Unsafe<string | Array<Static<typeof ContentPart>>>({
  type: ["string", "array"],
  items: ContentPart,
  minItems: 1,
  ...problem({ type: "expected a string or an array of text parts.", minItems: "must hold at least one part." }),
});

/** Content may be null or absent only on an assistant turn that calls tools or refuses; that is checked where messages are parsed. */
const Message = Type.Object(
  {
    role: StringEnum(CHAT_ROLES),
    // A participant's name: checked as OpenAI checks it, then not used (no chat template here gives it a place).
    name: Type.Optional(Nullable(Type.String())),
    content: Type.Optional(Type.Unsafe<Static<typeof MessageContent> | null>({ ...MessageContent, type: ["string", "array", "null"] })),
    refusal: Type.Optional(Nullable(Type.String())),
    tool_calls: Type.Optional(Nullable(Type.Array(MessageToolCall))),
    tool_call_id: Type.Optional(Nullable(Type.String())),
  },
  problem({ type: "expected a message object." }),
);

const Stop = Type.Unsafe<string | string[] | null>({
  type: ["string", "array", "null"],
  minLength: 1,
  maxItems: 4,
  items: { type: "string", minLength: 1 },
  ...problem("expected a non-empty string or an array of up to 4 non-empty strings."),
});

/** The json_schema's `schema` is the client's own JSON Schema: opaque here, its size and depth are checked where it is compiled. */
const ResponseFormat = Nullable(
  TaggedUnion("type", [
    Type.Object({ type: Type.Literal("text") }),
    Type.Object({ type: Type.Literal("json_object") }),
    Type.Object({
      type: Type.Literal("json_schema"),
      json_schema: Type.Object({
        schema: Type.Object({}),
        // OpenAI's rule for the name, which a remote specialist passes upstream.
        name: Type.Optional(Type.String({ pattern: "^[a-zA-Z0-9_-]{1,64}$", ...problem("must be 1 to 64 letters, digits, underscores or dashes.") })),
        description: Type.Optional(Nullable(Type.String())),
        strict: Type.Optional(Nullable(Type.Boolean())),
      }),
    }),
  ]),
);

const Penalty = Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 })));

/** OpenAI's metadata rule, checked where the request is parsed: a key named in an error path would echo the caller's key in full. */
export const METADATA_RULE = "expected an object of at most 16 string values, keys up to 64 characters and values up to 512.";
const Metadata = Type.Unsafe<Record<string, unknown> | null>({ type: ["object", "null"], ...problem(METADATA_RULE) });

/** POST /v1/chat/completions. Fields it does not name are ignored, as OpenAI does. */
export const ChatCompletionRequestSchema = Type.Object({
  model: Type.String({ description: "alveare-<specialist id>" }),
  messages: Type.Array(Message, {
    minItems: 1,
    maxItems: MAX_MESSAGES,
    ...problem({
      type: "expected an array of message objects.",
      minItems: "must contain at least one message.",
      maxItems: `must hold at most ${MAX_MESSAGES} messages.`,
    }),
  }),
  n: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: MAX_CHOICES, description: "Choices to generate from the one prompt." }))),
  logprobs: Type.Optional(Nullable(Type.Boolean({ description: "Return each output token's log-probability in choices[].logprobs." }))),
  top_logprobs: Type.Optional(
    Nullable(Type.Integer({ minimum: 0, maximum: MAX_TOP_LOGPROBS, description: "Alternatives per token (needs logprobs: true)." })),
  ),
  max_tokens: MaxTokens,
  max_completion_tokens: MaxTokens,
  temperature: Temperature,
  top_p: TopP,
  seed: Seed,
  stop: Type.Optional(Stop),
  stream: Type.Optional(Nullable(Type.Boolean({ default: false, description: "Answer as Server-Sent Events of chunks." }))),
  stream_options: Type.Optional(Nullable(Type.Object({ include_usage: Type.Optional(Nullable(Type.Boolean())) }))),
  response_format: Type.Optional(ResponseFormat),
  // Checked as OpenAI checks them, then not applied: llama.cpp's penalties work differently, and token ids are the model's own.
  frequency_penalty: Penalty,
  presence_penalty: Penalty,
  logit_bias: Type.Optional(
    Nullable(
      Type.Record(Type.String(), Type.Number({ minimum: -100, maximum: 100 }), {
        ...problem("expected an object mapping token ids to bias values from -100 to 100."),
      }),
    ),
  ),
  tools: Tools,
  tool_choice: ToolChoice,
  parallel_tool_calls: ParallelToolCalls,
  // Checked as OpenAI checks them, then not used: nothing is stored for later, and `user` is OpenAI's abuse-monitoring id.
  user: Type.Optional(Nullable(Type.String())),
  store: Type.Optional(Nullable(Type.Boolean())),
  metadata: Type.Optional(Metadata),
  // Only text is generated: "audio" here (and `audio`'s voice and format) is refused where the request is parsed.
  modalities: Type.Optional(Nullable(Type.Array(StringEnum(["text", "audio"] as const)))),
  audio: Type.Optional(Nullable(Type.Object({}))),
});
export type ChatCompletionRequestBody = Static<typeof ChatCompletionRequestSchema>;

export const chatCompletionRequest = compileSchema(ChatCompletionRequestSchema);
