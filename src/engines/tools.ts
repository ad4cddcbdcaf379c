import { randomBytes } from "node:crypto";

/** Tool calling in the engine layer's vocabulary (OpenAI's function tools). */

export interface ToolFunction {
  name: string;
  description?: string | undefined;
  /** A JSON Schema for the arguments object; its size and depth are checked before it gets here. */
  parameters: Readonly<Record<string, unknown>>;
  /** The caller's `strict`, for a remote upstream: OpenAI holds a call's arguments to the schema only when strict. */
  strict?: boolean | undefined;
}

/** "auto": the model answers or calls; "required": it must call; `{ name }`: it must call that one. */
export type ToolChoice = "auto" | "required" | { name: string };

export interface ToolRequest {
  tools: readonly ToolFunction[];
  choice: ToolChoice;
  /** Whether one answer may hold several calls. */
  parallel: boolean;
}

/** The tools a request's prompt documents: those the model may call, or those it is only shown. */
export const documentedTools = (request: {
  tools?: ToolRequest | undefined;
  shownTools?: readonly ToolFunction[] | undefined;
}): readonly ToolFunction[] | undefined => request.tools?.tools ?? request.shownTools;

/** A call's id, as OpenAI writes them: what a client echoes back in the `tool` message answering it. */
export const toolCallId = (): string => `call_${randomBytes(12).toString("base64url")}`;

export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as JSON text, exactly as produced (OpenAI's `function.arguments`). */
  arguments: string;
}

/**
 * A piece of a tool call as it streams: the first piece of each call carries its
 * id and name, later ones carry more of its arguments text.
 */
export interface ToolCallDelta {
  index: number;
  id?: string | undefined;
  name?: string | undefined;
  arguments: string;
}
