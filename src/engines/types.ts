/** The engine layer's vocabulary: what a specialist asks an engine to do. */
import type { ToolCall, ToolCallDelta, ToolRequest } from "./tools.js";

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
  | { type: "json_schema"; schema: Readonly<Record<string, unknown>> };

export type FinishReason = "stop" | "length" | "tool_calls";

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
  /** Aborted when the client goes away or the server shuts down. */
  signal: AbortSignal;
  /** Receives text as it is produced (streaming); omitted for whole responses. */
  onText?: ((delta: string) => void) | undefined;
  /** Tools the model may call; absent (or tool_choice "none") for plain answers. */
  tools?: ToolRequest | undefined;
  /** Receives tool calls as they are produced (streaming). */
  onToolCall?: ((delta: ToolCallDelta) => void) | undefined;
}

export interface GenerationResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** True when the request's signal ended generation early. */
  aborted: boolean;
  /** The calls the model made (finish reason "tool_calls", or "length" when the last was cut). */
  toolCalls?: ToolCall[] | undefined;
}

export interface Engine {
  /** A short description for logs and /health (e.g. "embedded:model.gguf"). */
  readonly name: string;
  generate(request: GenerationRequest): Promise<GenerationResult>;
  close(): Promise<void>;
}
