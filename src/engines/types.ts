/** The engine layer's vocabulary: what a specialist asks an engine to do. */

export type Role = "system" | "user" | "assistant";

export interface ChatMessage {
  role: Role;
  content: string;
}

/** A restriction of the output, enforced by grammar in the embedded engine. */
export type OutputConstraint =
  | { type: "text" }
  | { type: "labels"; labels: readonly string[] }
  | { type: "json_object" }
  | { type: "json_schema"; schema: Readonly<Record<string, unknown>> };

export type FinishReason = "stop" | "length";

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
  /** Called once the request has left the engine's queue and generation begins (queue-wait tracing). */
  onStarted?: (() => void) | undefined;
  /** W3C trace context for the upstream call of a remote engine. */
  traceparent?: string | undefined;
}

export interface GenerationResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** True when the request's signal ended generation early. */
  aborted: boolean;
}

export interface Engine {
  /** A short description for logs and /health (e.g. "embedded:model.gguf"). */
  readonly name: string;
  generate(request: GenerationRequest): Promise<GenerationResult>;
  close(): Promise<void>;
}
