import { toolCallId, type ToolCall, type ToolCallDelta, type ToolRequest } from "../tools.js";
import type { ChatMessage, GenerationRequest, TextDetail } from "../types.js";

/** An upstream's tool call, whole (`message.tool_calls`) or in pieces (`delta.tool_calls`). */
export interface UpstreamToolCall {
  index?: number | null;
  id?: string | null;
  function?: { name?: string; arguments?: unknown };
}

/**
 * A call's id, made where the upstream gave none (llama-server has answered without one, LM Studio with ""):
 * a client answers the call with a `tool` message naming it, and an empty id cannot be answered.
 */
const idOf = (call: UpstreamToolCall): string => (typeof call.id === "string" && call.id !== "" ? call.id : toolCallId());

/** The arguments as JSON text, as OpenAI sends them: llama-server has sent the object itself, which a client cannot parse. */
const argumentsOf = (call: UpstreamToolCall): string => {
  const args = call.function?.arguments;
  return typeof args === "string" ? args : args === undefined || args === null ? "" : JSON.stringify(args);
};

/** The history in OpenAI's shape, tool calls and tool results included. */
export function upstreamMessages(messages: readonly ChatMessage[]): Array<Record<string, unknown>> {
  return messages.map((m) => {
    const calls = m.toolCalls ?? [];
    if (calls.length > 0) {
      return {
        role: m.role,
        content: m.content.length > 0 ? m.content : null,
        tool_calls: calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
      };
    }
    return m.toolCallId === undefined ? { role: m.role, content: m.content } : { role: m.role, content: m.content, tool_call_id: m.toolCallId };
  });
}

/** tools, tool_choice and parallel_tool_calls as OpenAI takes them: passed through to the upstream. */
export function upstreamToolFields(tools: ToolRequest | undefined): Record<string, unknown> {
  if (tools === undefined) return {};
  return {
    tools: tools.tools.map((t) => ({
      type: "function",
      function: { name: t.name, ...(t.description === undefined ? {} : { description: t.description }), parameters: t.parameters },
    })),
    tool_choice: typeof tools.choice === "object" ? { type: "function", function: { name: tools.choice.name } } : tools.choice,
    parallel_tool_calls: tools.parallel,
  };
}

export const wholeToolCalls = (calls: readonly UpstreamToolCall[] | null | undefined): ToolCall[] =>
  (calls ?? []).map((c) => ({ id: idOf(c), name: c.function?.name ?? "", arguments: argumentsOf(c) }));

/** Gathers streamed tool-call pieces and forwards them in our delta shape. */
export class ToolCallStream {
  private readonly calls: ToolCall[] = [];

  constructor(private readonly request: GenerationRequest) {}

  /** Forwards what the pieces add, the first forwarded delta with `detail`; false when nothing was forwarded (nor `detail` taken). */
  push(pieces: readonly UpstreamToolCall[] | null | undefined, detail?: TextDetail): boolean {
    let forwarded = false;
    const forward = (delta: ToolCallDelta): void => {
      this.request.onToolCall?.(delta, forwarded ? undefined : detail);
      forwarded = true;
    };
    for (const piece of pieces ?? []) {
      const index = this.indexOf(piece);
      const args = argumentsOf(piece);
      let call = this.calls[index];
      if (call === undefined) {
        call = { id: idOf(piece), name: piece.function?.name ?? "", arguments: "" };
        this.calls[index] = call;
        forward({ index, id: call.id, name: call.name, arguments: "" });
      }
      if (args.length > 0) {
        call.arguments += args;
        forward({ index, arguments: args });
      } else if (!forwarded && (detail?.logprobs?.length ?? 0) > 0) {
        // A piece that adds nothing but comes with entries (a call's closing syntax) still carries them.
        forward({ index, arguments: "" });
      }
    }
    return forwarded;
  }

  /**
   * The call a piece belongs to: its `index`, or, where an upstream leaves that out (Gemini's OpenAI endpoint,
   * mistral.rs), the call with the piece's id (a new one for an id not seen yet), else the last call. Read as
   * call 0, a second call's arguments were appended to the first's.
   */
  private indexOf(piece: UpstreamToolCall): number {
    if (piece.index !== undefined && piece.index !== null) return piece.index;
    if (piece.id === undefined || piece.id === null || piece.id === "") return Math.max(0, this.calls.length - 1);
    const known = this.calls.findIndex((call) => call?.id === piece.id);
    return known >= 0 ? known : this.calls.length;
  }

  get toolCalls(): ToolCall[] {
    return this.calls.filter((c) => c !== undefined);
  }
}
