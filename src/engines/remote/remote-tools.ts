import { toolCallId, type ToolCall, type ToolCallDelta, type ToolRequest } from "../tools.js";
import type { ChatMessage, GenerationRequest, TextDetail } from "../types.js";

/** An upstream's tool call, whole (`message.tool_calls`) or in pieces (`delta.tool_calls`). */
export interface UpstreamToolCall {
  index?: unknown;
  id?: string | null;
  function?: { name?: unknown; arguments?: unknown };
}

/**
 * A call's id, made where the upstream gave none (llama-server has answered without one, LM Studio with ""):
 * a client answers the call with a `tool` message naming it, and an empty id cannot be answered.
 */
const idOf = (call: UpstreamToolCall): string => (typeof call.id === "string" && call.id !== "" ? call.id : toolCallId());

/** A call's function name: only a string is one (a client would fail to read anything else). */
const nameOf = (call: UpstreamToolCall): string => (typeof call.function?.name === "string" ? call.function.name : "");

/** The calls (or pieces) an upstream sent that are objects: anything else in the list is no call. */
const callsIn = (calls: unknown): UpstreamToolCall[] =>
  Array.isArray(calls) ? calls.filter((c): c is UpstreamToolCall => typeof c === "object" && c !== null) : [];

/** The most calls one answer may hold: an index past it is the upstream's error, and would size our array by it. */
const MAX_TOOL_CALLS = 128;

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

/**
 * tools, tool_choice and parallel_tool_calls as OpenAI takes them: passed through to the upstream. Tools only shown
 * (tool_choice "none") are not sent: llama-server without --jinja and Ollama's models without tool support refuse any
 * request with tools (a 400), and a client that always sends its tools with "none" wants the text every upstream gives.
 */
export function upstreamToolFields(tools: ToolRequest | undefined): Record<string, unknown> {
  if (tools === undefined) return {};
  return {
    tools: tools.tools.map((t) => ({
      type: "function",
      function: {
        name: t.name,
        ...(t.description === undefined ? {} : { description: t.description }),
        parameters: t.parameters,
        // The caller's strict passes on, as a json_schema's does: without it OpenAI takes the schema as a hint.
        ...(t.strict === undefined ? {} : { strict: t.strict }),
      },
    })),
    tool_choice: typeof tools.choice === "object" ? { type: "function", function: { name: tools.choice.name } } : tools.choice,
    parallel_tool_calls: tools.parallel,
  };
}

export const wholeToolCalls = (calls: unknown): ToolCall[] =>
  callsIn(calls).map((c) => ({ id: idOf(c), name: nameOf(c), arguments: argumentsOf(c) }));

/** Gathers streamed tool-call pieces and forwards them in our delta shape. */
export class ToolCallStream {
  private readonly calls: ToolCall[] = [];

  constructor(private readonly request: GenerationRequest) {}

  /** Forwards what the pieces add, the first forwarded delta with `detail`; false when nothing was forwarded (nor `detail` taken). */
  push(pieces: unknown, detail?: TextDetail): boolean {
    let forwarded = false;
    const forward = (delta: ToolCallDelta): void => {
      this.request.onToolCall?.(delta, forwarded ? undefined : detail);
      forwarded = true;
    };
    for (const piece of callsIn(pieces)) {
      const index = this.indexOf(piece);
      const args = argumentsOf(piece);
      let call = this.calls[index];
      if (call === undefined) {
        call = { id: idOf(piece), name: nameOf(piece), arguments: "" };
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
   * call 0, a second call's arguments were appended to the first's. An index that is no array index within
   * MAX_TOOL_CALLS counts as left out: 1e9 would have made every read of the calls walk a billion holes.
   */
  private indexOf(piece: UpstreamToolCall): number {
    const index = piece.index;
    if (typeof index === "number" && Number.isInteger(index) && index >= 0 && index < MAX_TOOL_CALLS) return index;
    if (piece.id === undefined || piece.id === null || piece.id === "") return Math.max(0, this.calls.length - 1);
    const known = this.calls.findIndex((call) => call?.id === piece.id);
    return known >= 0 ? known : this.calls.length;
  }

  get toolCalls(): ToolCall[] {
    return this.calls.filter((c) => c !== undefined);
  }
}
