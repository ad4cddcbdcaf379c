import type { Logger } from "pino";
import type { Embedder } from "./embedded/embeddings.js";
import type { ToolCall, ToolCallDelta, ToolFunction, ToolRequest } from "./tools.js";
import type { TraceHeaders } from "../observability/telemetry.js";

/** The engine layer's vocabulary: what a specialist asks an engine to do, and how engines are started. */

export type Role = "system" | "user" | "assistant";

export interface ChatMessage {
  role: Role | "tool";
  content: string;
  /** An assistant turn's tool calls (its content may then be empty). */
  toolCalls?: readonly ToolCall[] | undefined;
  /** A tool turn: the call it answers. */
  toolCallId?: string | undefined;
}

/** A restriction of the output, enforced by grammar in the embedded engine. */
export type OutputConstraint =
  | { type: "text" }
  | { type: "labels"; labels: readonly string[] }
  | { type: "json_object" }
  /**
   * `name`, `description` and `strict` as the caller gave them, for a remote upstream (OpenAI holds its answer to the
   * schema only when strict, and its model reads the description to know what the format is for).
   */
  | {
      type: "json_schema";
      schema: Readonly<Record<string, unknown>>;
      name?: string | undefined;
      description?: string | undefined;
      strict?: boolean | undefined;
    };

/** "content_filter" only as a remote upstream (Azure OpenAI, OpenAI) reports it: its filter cut the answer. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

/** One alternative at a position: a token's text, its UTF-8 bytes (null for a control token, which has none) and its log-probability. */
export interface TokenAlternative {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

/** A generated token with the model's own log-probability (log-softmax of the raw logits) and the most likely alternatives. */
export interface TokenLogprob extends TokenAlternative {
  top: TokenAlternative[];
}

/**
 * What a streamed piece (text, or a tool call's) belongs to: its choice, and the log-probabilities (when asked) of
 * the tokens produced since the previous piece, so the pieces' entries together are the whole answer's.
 */
export interface TextDetail {
  choice: number;
  logprobs?: TokenLogprob[] | undefined;
  /** The piece is refusal text (a remote upstream's `delta.refusal`), not content. */
  refusal?: boolean | undefined;
}

/** One choice of several (`n`). */
export interface ChoiceResult {
  text: string;
  /** A remote upstream's refusal (OpenAI's structured outputs), in place of content. */
  refusal?: string | undefined;
  completionTokens: number;
  finishReason: FinishReason;
  logprobs?: TokenLogprob[] | undefined;
}

/**
 * A request's abort, watched without an AbortSignal: an engine that only has
 * to stop one exchange (the remote engine's whole answers) watches this, and
 * the request's AbortSignal, an EventTarget with its listener machinery, is
 * then never made.
 */
export interface AbortWatch {
  readonly aborted: boolean;
  /** The abort's reason, once aborted. */
  readonly reason: unknown;
  /** Calls `onAbort` when the abort comes; not when it came already (check `aborted` first). */
  watch(onAbort: (reason: unknown) => void): void;
  unwatch(onAbort: (reason: unknown) => void): void;
}

/** An abort as both: the AbortSignal is made on first read. */
export interface AbortSource extends AbortWatch {
  readonly signal: AbortSignal;
}

export interface GenerationRequest {
  messages: readonly ChatMessage[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number | undefined;
  /** Strings that end the output; they are not part of it. */
  stop: readonly string[];
  constraint: OutputConstraint;
  /** The specialist's context size, when smaller than the engine's. */
  contextLimit?: number | undefined;
  /** Aborted when the client goes away or the server shuts down (may be made on first read: see `abortWatch`). */
  readonly signal: AbortSignal;
  /** The same abort as `signal`, for engines that only watch it. */
  abortWatch?: AbortWatch | undefined;
  /** Receives text as it is produced (streaming); omitted for whole responses. */
  onText?: ((delta: string, detail?: TextDetail) => void) | undefined;
  /** Backpressure from whoever takes the text: a promise to wait for before producing more, undefined to go on. */
  whenWritable?: (() => Promise<void> | undefined) | undefined;
  /** Choices to generate from the one prompt (`n`); 1 when absent. */
  choices?: number | undefined;
  /** Asks for log-probabilities: how many alternatives per token (0..20); absent for none. */
  topLogprobs?: number | undefined;
  /** Tools the model may call; absent for plain answers. */
  tools?: ToolRequest | undefined;
  /**
   * Tools documented in the prompt as `tools` would be, that the model may not call: OpenAI's tool_choice "none".
   * The answer is text (the specialist's own constraint holds); never given together with `tools`.
   */
  shownTools?: readonly ToolFunction[] | undefined;
  /** Receives tool calls as they are produced (streaming). */
  onToolCall?: ((delta: ToolCallDelta, detail?: TextDetail) => void) | undefined;
  /** Called once the request has left the engine's queue and generation begins (queue-wait tracing). */
  onStarted?: (() => void) | undefined;
  /** W3C trace context (traceparent, and the caller's tracestate) for the upstream call of a remote engine. */
  traceHeaders?: TraceHeaders | undefined;
  /**
   * Whose cached prompt state this request may reuse, and leave for reuse: an account's id; absent, anyone's.
   * Another scope's cache gives it the system prompt at most, and only when that is the operator's own
   * (`systemIsOperators`), so no account can tell from response times what another one sent.
   */
  cacheScope?: string | undefined;
  /** The leading system message is the specialist's system prompt alone, with nothing of the caller's in it. */
  systemIsOperators?: boolean | undefined;
  /** The output constraint is the specialist's own, not the caller's (whose compiled grammar only its scope reuses). */
  constraintIsOperators?: boolean | undefined;
}

export interface GenerationResult {
  text: string;
  /** The first choice's refusal, when a remote upstream refused (OpenAI's `message.refusal`). */
  refusal?: string | undefined;
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** True when the request's signal ended generation early. */
  aborted: boolean;
  /** The calls the model made (finish reason "tool_calls", or "length" when the last was cut). */
  toolCalls?: ToolCall[] | undefined;
  /** The first choice's token log-probabilities, when asked. */
  logprobs?: TokenLogprob[] | undefined;
  /** Every choice when several were asked; text, finishReason and logprobs above are the first's, completionTokens their sum. */
  choices?: ChoiceResult[] | undefined;
  /** For a labels output: each label's probability, normalised over the labels. */
  labelScores?: Record<string, number> | undefined;
  /** Prompt tokens that came from the engine's cache (a sequence's, a snapshot) rather than being evaluated; absent where unknown. */
  cachedPromptTokens?: number | undefined;
}

export interface Engine {
  /** A short description for logs and /health (e.g. "embedded:model.gguf"). */
  readonly name: string;
  generate(request: GenerationRequest): Promise<GenerationResult>;
  close(): Promise<void>;
  /**
   * A request's prompt tokens, exactly, with its tools documented as the model reads them (a token
   * reservation's bound); absent, or undefined, where the engine cannot say (a remote template).
   */
  promptTokensWithTools?(request: GenerationRequest): number | undefined;
}

/** What every engine kind may use when it starts its engines. */
interface EngineEnvironment {
  settings: { parallel: number; queue: number; threads: number | "auto" };
  /** The config's `models` table: names to paths or hf: URIs. */
  models: Readonly<Record<string, string>>;
  dataDir: string;
  logger: Logger;
}

/** A specialist as its engine kind sees it: an id, how much context it needs, and the kind's settings. */
export interface EngineUser<Config> {
  id: string;
  contextSize: number;
  engine: Config;
  /** "embeddings": the specialist needs an embedder rather than a generating engine. */
  kind?: "embeddings" | undefined;
  /** The specialist's own system prompt, which leads its every conversation (engines may prepare it at start-up). */
  systemPrompt?: string | undefined;
  /** What its answers are (a label set must fit after the prompt). */
  output?: OutputConstraint | undefined;
}

/** The engines one kind started: one per specialist id (specialists with the same settings share one). */
export interface StartedEngines {
  engines: ReadonlyMap<string, Engine>;
  /** Embedders of the embeddings specialists among the users, by id (kinds that cannot embed leave it out). */
  embedders?: ReadonlyMap<string, Embedder>;
  close(): Promise<void>;
}

/**
 * One kind of engine: how specialists whose config carries `{ kind }` get
 * their engines. `start` is written as a method so that a factory of one
 * config type fits the map of all kinds; the registry only ever hands a
 * factory the specialists of its own kind.
 */
export interface EngineFactory<Config extends { kind: string }> {
  readonly kind: Config["kind"];
  start(users: readonly EngineUser<Config>[], environment: EngineEnvironment): Promise<StartedEngines>;
}
