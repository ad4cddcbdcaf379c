import type { ChatCompletion, ChatCompletionChunk } from "../../api/types.js";
import type { ToolCall, ToolCallDelta } from "../../engines/tools.js";

type Message = ChatCompletion["choices"][number]["message"];
type Delta = ChatCompletionChunk["choices"][number]["delta"];

/**
 * The answer's message: its text, or its tool calls with content null (as OpenAI sends them), or with the text
 * a remote upstream wrote before them (vLLM's and llama-server's tool parsers keep it, and a stream relays it).
 */
export function assistantMessage(result: { text: string; refusal?: string | undefined; toolCalls?: readonly ToolCall[] | undefined }): Message {
  const calls = result.toolCalls ?? [];
  // A refusal (a remote upstream's) stands in place of content, which is then null, as OpenAI sends it.
  const refusal = result.refusal ?? null;
  if (calls.length === 0) return { role: "assistant", content: refusal !== null && result.text === "" ? null : result.text, refusal };
  return {
    role: "assistant",
    content: result.text.length > 0 ? result.text : null,
    refusal,
    tool_calls: calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
  };
}

/** A stream chunk's delta for a piece of a tool call, in OpenAI's shape (the choice's opening chunk names the role). */
export function toolCallChunkDelta(delta: ToolCallDelta): Delta {
  const call =
    delta.id === undefined
      ? { index: delta.index, function: { arguments: delta.arguments } }
      : { index: delta.index, id: delta.id, type: "function" as const, function: { name: delta.name ?? "", arguments: delta.arguments } };
  return { tool_calls: [call] };
}
