import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ChatModelFunctionCall } from "node-llama-cpp";
import { MAX_REPLAYED_VALUES, toHistory } from "../src/engines/embedded/tool-history.js";
import type { ChatMessage } from "../src/engines/types.js";
import { postJson, startTestServer } from "./helpers/fixtures.js";

/** A conversation replaying one call per argument text, each answered. */
function replaying(args: readonly string[]): ChatMessage[] {
  const ids = args.map((_, i) => `c${i}`);
  return [
    { role: "user", content: "hi" },
    { role: "assistant", content: "", toolCalls: args.map((a, i) => ({ id: ids[i]!, name: "f", arguments: a })) },
    ...ids.map((id): ChatMessage => ({ role: "tool", content: "ok", toolCallId: id })),
  ];
}

const paramsOf = (messages: ChatMessage[]): unknown[] =>
  toHistory(messages).flatMap((item) =>
    item.type === "model" ? item.response.filter((r): r is ChatModelFunctionCall => typeof r !== "string").map((call) => call.params) : [],
  );

describe("replayed tool-call arguments", () => {
  it("are parsed up to the request's budget of values, then shown as the text they came as", () => {
    const half = JSON.stringify(Array(Math.floor(MAX_REPLAYED_VALUES / 2) - 10).fill(1));
    const [first, second, third] = paramsOf(replaying([half, half, half]));
    assert.ok(Array.isArray(first) && Array.isArray(second), "the first two fit the budget together");
    assert.equal(third, half, "the third would pass it: its text, not parsed");
    // One megabyte of `[{},{},…]`: 330,000 values, parsed and written back it held the event loop ~0.8 s.
    const megabyte = JSON.stringify(Array(330_000).fill({}));
    assert.deepEqual(paramsOf(replaying([megabyte, '{"a":1}'])), [megabyte, { a: 1 }]);
  });

  it("count brackets and commas inside strings as text", () => {
    const text = JSON.stringify({ s: ",".repeat(MAX_REPLAYED_VALUES * 2) });
    assert.deepEqual(paramsOf(replaying([text])), [JSON.parse(text)]);
  });
});

describe("a conversation replaying tool calls, over HTTP", () => {
  it("may replay 1,024 calls in all; one more is a 400 naming the message past the limit", async () => {
    const server = await startTestServer();
    try {
      const history = (count: number) => {
        const calls = Array.from({ length: count }, (_, i) => ({ id: `c${i}`, type: "function", function: { name: "f", arguments: "{}" } }));
        return [
          { role: "user", content: "hi" },
          { role: "assistant", content: null, tool_calls: calls.slice(0, 1000) },
          ...calls.slice(0, 1000).map((c) => ({ role: "tool", tool_call_id: c.id, content: "ok" })),
          { role: "assistant", content: null, tool_calls: calls.slice(1000) },
          ...calls.slice(1000).map((c) => ({ role: "tool", tool_call_id: c.id, content: "ok" })),
        ];
      };
      const chat = (count: number) =>
        postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", max_tokens: 2, messages: history(count) });
      const within = await chat(1024);
      // Their prompt is far longer than this model's context: refused for that, not for the count.
      assert.equal((within.json.error as { code: string }).code, "context_length_exceeded");
      const over = await chat(1025);
      assert.equal(over.status, 400);
      assert.deepEqual(over.json.error, {
        type: "invalid_request_error",
        code: "invalid_parameter",
        param: "messages[1002].tool_calls",
        message: "Invalid 'messages[1002].tool_calls': a conversation may replay at most 1024 tool calls in all.",
      });
    } finally {
      await server.close();
    }
  });
});
