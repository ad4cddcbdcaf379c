import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { postJson, startTestServer } from "./helpers/fixtures.js";

/** A specialist whose grammar admits one long answer, generated token by token: the model cannot end early. */
const long = { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: "go ".repeat(400) } } };

describe("embedded engine: a request beside long generations", () => {
  /**
   * Starts two long streams on a model whose every sequence holds a cache of its own (so the next
   * request must erase or load one: the context's lock), runs `small` while they generate, and
   * returns the order in which everything finished.
   */
  async function besideTwoLongStreams(small: (url: string) => Promise<{ status: number; json: unknown }>): Promise<string[]> {
    const server = await startTestServer({ engine: { parallel: 3, queue: 16 }, specialists: { long } });
    try {
      const chat = (content: string) =>
        postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content }], max_tokens: 2 });
      await Promise.all(["one", "two", "three"].map(chat));
      const finished: string[] = [];
      const started: string[] = [];
      const stream = async (name: string): Promise<void> => {
        const response = await fetch(`${server.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "alveare-long", messages: [{ role: "user", content: name }], stream: true, max_tokens: 1000 }),
        });
        const reader = response.body!.getReader();
        started.push(name);
        while (!(await reader.read()).done);
        finished.push(name);
      };
      const streams = [stream("a"), stream("b")];
      while (started.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
      const answer = await small(server.url);
      finished.push("small");
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      await Promise.all(streams);
      return finished;
    } finally {
      await server.close();
    }
  }

  it("is answered while two long streams run on the same model, not after them", async () => {
    const finished = await besideTwoLongStreams((url) =>
      postJson(`${url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content: "a different question" }], max_tokens: 2 }),
    );
    assert.equal(finished[0], "small", `the small request waited for the long ones: ${finished.join(", ")}`);
  });

  it("scores a classify request's labels while two long streams run (each label's erase takes its turn)", async () => {
    const finished = await besideTwoLongStreams((url) => postJson(`${url}/v1/infer`, { specialist: "classify", prompt: "is this spam?" }));
    assert.equal(finished[0], "small", `the classify request waited for the long ones: ${finished.join(", ")}`);
  });
});
