/**
 * Request and response bodies of the public API, defined once here: the SDK
 * exports them and the server (src/api/types.ts) validates into them.
 */

/** Optional parameters take null for "the default", as the server does (and as the chat parameters do). */
export interface InferRequest {
  specialist: string;
  prompt: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
}

export interface InferResponse {
  id: string;
  specialist: string;
  result: string;
  tokens_used: number;
  latency_ms: number;
  /** Label specialists (classify): every label's probability; they sum to 1. */
  scores?: Record<string, number>;
  /** With scores: the chosen label's score. */
  confidence?: number;
  /** Only when the answer did not simply end: "length" (max_tokens cut it) or "content_filter" (a remote upstream's filter cut it). */
  finish_reason?: "length" | "content_filter";
  /** A remote upstream's refusal (OpenAI's structured outputs), in place of a result. */
  refusal?: string;
}

/** "developer" (OpenAI's newer name for the system role) is read as a system message. */
export type ChatRole = "system" | "developer" | "user" | "assistant" | "tool";

export interface ChatContentPart {
  type: "text";
  text: string;
}

/** An assistant's refusal, replayed from an earlier answer: only assistant messages may carry one (else 400). */
export interface ChatContentRefusalPart {
  type: "refusal";
  refusal: string;
}

export interface ChatCompletionMessageParam {
  role: ChatRole;
  /**
   * A non-empty array of parts, or a string. May be null (or left out) only on an assistant message that carries
   * tool_calls or a refusal; refusal parts only on an assistant message.
   */
  content: string | Array<ChatContentPart | ChatContentRefusalPart> | null;
  /** Accepted for OpenAI compatibility and ignored: the model never sees participant names (the server checks each is a string). */
  name?: string;
  /** An assistant message's refusal, replayed from an earlier answer (content then null); read as its text. */
  refusal?: string | null;
  /** An assistant message's tool calls, replayed from an earlier answer. */
  tool_calls?: ChatCompletionMessageToolCall[] | null;
  /** A tool message: the id of the call it answers. */
  tool_call_id?: string | null;
}

/** A function the model may call; `parameters` is a JSON Schema of type "object". */
export interface ChatCompletionTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export type ChatCompletionToolChoice =
  | "none"
  | "auto"
  | "required"
  | { type: "function"; function: { name: string } }
  | { type: "allowed_tools"; allowed_tools: { mode: "auto" | "required"; tools: Array<{ type: "function"; function: { name: string } }> } };

export interface ChatCompletionMessageToolCall {
  id: string;
  type: "function";
  /** `arguments` is JSON text; on a "length" finish the last call's may be cut short. */
  function: { name: string; arguments: string };
}

/** A piece of a streamed tool call: the first carries id, type and name, later ones more arguments text. */
export interface ChatCompletionChunkToolCall {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments: string };
}

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; description?: string; schema: Record<string, unknown>; strict?: boolean } };

/**
 * `null` means absent, as on the server. Parameters OpenAI has and the server serves are all here; those it checks
 * and then ignores say so. Refused, so not here: `audio` (and `"audio"` in `modalities`), and the deprecated
 * `functions` and `function_call` (send `tools` and `tool_choice`).
 */
export interface ChatCompletionCreateParams {
  model: string;
  messages: ChatCompletionMessageParam[];
  /** OpenAI's deprecated name for max_completion_tokens, which wins when both are sent. 1 to 4096. */
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** 0 to 2. */
  temperature?: number | null;
  /** Over 0, up to 1. */
  top_p?: number | null;
  stream?: boolean;
  /** Only with stream: true. */
  stream_options?: { include_usage?: boolean | null } | null;
  /** Up to 4 non-empty strings. */
  stop?: string | string[] | null;
  seed?: number | null;
  response_format?: ResponseFormat | null;
  tools?: ChatCompletionTool[] | null;
  tool_choice?: ChatCompletionToolChoice | null;
  parallel_tool_calls?: boolean | null;
  /** Choices to generate, 1 to 8 (the prompt is counted once). */
  n?: number | null;
  /** Returns each token's log-probability in choices[].logprobs. */
  logprobs?: boolean | null;
  /** 0 to 20 most likely alternatives per token; needs logprobs: true. */
  top_logprobs?: number | null;
  /** -2 to 2; checked, then ignored (llama.cpp's penalties work differently). */
  frequency_penalty?: number | null;
  /** -2 to 2; checked, then ignored (llama.cpp's penalties work differently). */
  presence_penalty?: number | null;
  /** Token ids (digits, as strings) to biases from -100 to 100; checked, then ignored. */
  logit_bias?: Record<string, number> | null;
  /** OpenAI's end-user id for abuse monitoring; checked (a string), then ignored. */
  user?: string | null;
  /** Checked (a boolean), then ignored: nothing is stored. */
  store?: boolean | null;
  /** At most 16 pairs, keys up to 64 characters, values up to 512; checked, then ignored: nothing is stored. */
  metadata?: Record<string, string> | null;
  /** Only text is generated: ["text"] (or nothing); "audio" is refused. */
  modalities?: Array<"text"> | null;
}

export interface ChatCompletionTokenAlternative {
  token: string;
  /** The model's own log-probability (log-softmax of its logits, before temperature, top-p and grammar). */
  logprob: number;
  /** The token's UTF-8 bytes. */
  bytes: number[] | null;
}

export interface ChatCompletionTokenLogprob extends ChatCompletionTokenAlternative {
  top_logprobs: ChatCompletionTokenAlternative[];
}

export interface ChatCompletionLogprobs {
  content: ChatCompletionTokenLogprob[] | null;
  refusal: null;
}

/** "content_filter": a remote specialist's upstream filtered the answer. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Present where the server knows how much of the prompt its cache served instead of evaluating it. */
  prompt_tokens_details?: { cached_tokens: number };
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    /** content is null when the answer is tool calls alone (a remote upstream may write text before its calls). */
    /** refusal: a remote upstream's refusal (OpenAI's structured outputs), content then null; otherwise null. */
    message: { role: "assistant"; content: string | null; refusal: string | null; tool_calls?: ChatCompletionMessageToolCall[] };
    /** Null unless logprobs was asked for. */
    logprobs: ChatCompletionLogprobs | null;
    finish_reason: FinishReason;
  }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: "assistant"; content?: string | null; refusal?: string | null; tool_calls?: ChatCompletionChunkToolCall[] };
    /** The log-probabilities of this chunk's tokens, when asked for. */
    logprobs?: ChatCompletionLogprobs | null;
    finish_reason: FinishReason | null;
  }>;
  usage?: CompletionUsage | null;
}

export interface Model {
  id: string;
  object: "model";
  /** Unix seconds. */
  created: number;
  owned_by: "alveare";
}

export interface ModelList {
  object: "list";
  data: Model[];
}

export interface Usage {
  period_start: string;
  period_end: string;
  requests_used: number;
  requests_limit: number;
  tokens_used: number;
  by_specialist: Record<string, number>;
}

export interface Health {
  status: "ok";
  version: string;
  uptime_seconds: number;
}

export interface ApiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** Chat completion model names are specialist ids with this prefix. */
export const MODEL_PREFIX = "alveare-";

export interface EmbeddingCreateParams {
  /** An embeddings model, e.g. "alveare-embed". */
  model: string;
  /** One text or up to 2,048 texts. */
  input: string | string[];
  /** "float" (default) or "base64" (little-endian float32, as OpenAI encodes it). */
  encoding_format?: "float" | "base64" | null;
  /** Truncates every vector to this many dimensions and rescales it to unit length. */
  dimensions?: number | null;
  /** OpenAI's end-user id for abuse monitoring; checked (a string), then ignored. */
  user?: string | null;
}

export interface Embedding {
  object: "embedding";
  index: number;
  /** Numbers for encoding_format "float", a base64 string for "base64". */
  embedding: number[] | string;
}

export interface CreateEmbeddingResponse {
  object: "list";
  data: Embedding[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}
