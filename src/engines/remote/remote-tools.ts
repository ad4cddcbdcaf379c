import { toolCallId, type ToolCall, type ToolCallDelta, type ToolRequest } from "../tools.js";
import type { ChatMessage, GenerationRequest, TextDetail, TokenLogprob } from "../types.js";

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
const hasId = (call: UpstreamToolCall): boolean => typeof call.id === "string" && call.id !== "";
const idOf = (call: UpstreamToolCall): string => (hasId(call) ? (call.id as string) : toolCallId());

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

/** A streamed call not forwarded yet: its name may still be coming, in pieces, and its id after its arguments. */
interface HeldCall {
  /** Whether the id is one we made (the upstream has sent none yet). */
  ownId: boolean;
  /** Log-probability entries of the pieces held, forwarded with the call. */
  logprobs: TokenLogprob[];
  choice: number;
}

/**
 * Gathers streamed tool-call pieces and forwards them in our delta shape. A call is forwarded once its name is
 * whole, which is known when its arguments begin (or the stream ends, or another call begins): an upstream may send
 * the name in pieces, or the arguments (and the id) before it, and clients read a streamed name differently (the
 * `openai` Python SDK joins the pieces, the Node SDK keeps the last), so a call's name is sent once, whole.
 */
export class ToolCallStream {
  private readonly calls: ToolCall[] = [];
  private readonly held = new Map<number, HeldCall>();

  constructor(private readonly request: GenerationRequest) {}

  /**
   * Forwards what the pieces add, the first delta of theirs with `detail`'s entries; false when the pieces were
   * neither forwarded nor held (nor `detail` taken).
   */
  push(pieces: unknown, detail?: TextDetail): boolean {
    let taken = false;
    /** The pieces' own entries, given to the first delta of theirs. */
    const take = (): readonly TokenLogprob[] => {
      if (taken) return [];
      taken = true;
      return detail?.logprobs ?? [];
    };
    for (const piece of callsIn(pieces)) {
      const index = this.indexOf(piece);
      const args = argumentsOf(piece);
      let call = this.calls[index];
      if (call === undefined) {
        // Calls reach the client in order: one still held is whole once the next begins.
        for (const earlier of [...this.held.keys()].filter((i) => i < index).sort((a, b) => a - b)) this.release(earlier);
        call = { id: idOf(piece), name: "", arguments: "" };
        this.calls[index] = call;
        this.held.set(index, { ownId: !hasId(piece), logprobs: [], choice: detail?.choice ?? 0 });
      }
      const held = this.held.get(index);
      if (held === undefined) {
        const entries = take();
        call.arguments += args;
        // A piece that adds nothing but comes with entries (a call's closing syntax) still carries them.
        if (args.length > 0 || entries.length > 0) this.forward({ index, arguments: args }, entries, detail?.choice ?? 0);
        continue;
      }
      // Some servers repeat the name so far in every piece (whole, or growing): such a piece replaces it.
      const name = nameOf(piece);
      call.name = name.startsWith(call.name) ? name : call.name + name;
      if (held.ownId && hasId(piece)) {
        call.id = piece.id as string;
        held.ownId = false;
      }
      call.arguments += args;
      held.logprobs.push(...take());
      if (call.name !== "" && args.length > 0) this.release(index);
    }
    // Held pieces took their entries too (forwarded with their call).
    return taken;
  }

  /** Forwards every call still held: the stream has ended. */
  finish(): void {
    for (const index of [...this.held.keys()].sort((a, b) => a - b)) this.release(index);
  }

  /** Forwards a held call whole: its id, name and the arguments so far, with the entries of its pieces. */
  private release(index: number): void {
    const held = this.held.get(index);
    const call = this.calls[index];
    if (held === undefined || call === undefined) return;
    this.held.delete(index);
    this.forward({ index, id: call.id, name: call.name, arguments: call.arguments }, held.logprobs, held.choice);
  }

  private forward(delta: ToolCallDelta, logprobs: readonly TokenLogprob[], choice: number): void {
    this.request.onToolCall?.(delta, logprobs.length > 0 ? { choice, logprobs: [...logprobs] } : undefined);
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
    if (known >= 0) return known;
    // The id of a call still held, whose first piece came without one (its name first): not a new call.
    const last = this.calls.length - 1;
    const lastHeld = this.held.get(last);
    return lastHeld?.ownId === true && this.calls[last]?.arguments === "" ? last : this.calls.length;
  }

  get toolCalls(): ToolCall[] {
    return this.calls.filter((c) => c !== undefined);
  }
}
