import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { toGenerationRequest } from "../src/specialists/generation.js";
import { signalSource } from "../src/engines/abort-watch.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

describe("token accounting and finish_reason", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  const promptTokensOf = (specialistId: string, content: string): number => {
    const specialist = server.registry.get(specialistId)!;
    const request = toGenerationRequest(specialist, { messages: [{ role: "user", content }] }, signalSource(new AbortController().signal));
    return (specialist.engine as EmbeddedEngine).countPromptTokens(request.messages);
  };

  it("counts the fully formatted prompt and the output as the engine does", async () => {
    for (const maxTokens of [1, 5, 17]) {
      const content = `Tell me a story number ${maxTokens}`;
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content }],
        max_tokens: maxTokens,
        seed: maxTokens,
      });
      const usage = r.json.usage as { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      assert.equal(usage.prompt_tokens, promptTokensOf("chat", content));
      assert.ok(usage.completion_tokens <= maxTokens);
      const finish = (r.json.choices as Array<{ finish_reason: string }>)[0]!.finish_reason;
      // Random weights rarely pick the end token: "length" exactly when max_tokens was used up.
      assert.equal(finish === "length", usage.completion_tokens === maxTokens);
      const log = server.logs.requests().at(-1)!;
      assert.equal(log.completion_tokens, usage.completion_tokens);
    }
  });

  it("reports tokens_used as prompt plus completion tokens on /v1/infer", async () => {
    const r = await postJson(`${server.url}/v1/infer`, { specialist: "summarise", prompt: "The quarterly revenue grew.", max_tokens: 6, seed: 1 });
    assert.equal(r.status, 200);
    const prompt = promptTokensOf("summarise", "The quarterly revenue grew.");
    const completion = (r.json.tokens_used as number) - prompt;
    assert.ok(completion >= 1 && completion <= 6, `completion tokens ${completion}`);
    assert.match(r.json.id as string, /^inf-/);
    assert.equal(r.json.specialist, "summarise");
    assert.equal(typeof r.json.latency_ms, "number");
  });

  it("says stop when the output ended by itself, length when max_tokens cut it", async () => {
    // A label grammar ends after the label: the model stops well before 50 tokens.
    const free = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-classify",
      messages: [{ role: "user", content: "I love it" }],
      max_tokens: 50,
    });
    const freeChoice = (free.json.choices as Array<{ finish_reason: string; message: { content: string } }>)[0]!;
    assert.equal(freeChoice.finish_reason, "stop");
    assert.ok((free.json.usage as { completion_tokens: number }).completion_tokens < 50);
    const cut = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-classify",
      messages: [{ role: "user", content: "I love it" }],
      max_tokens: 1,
    });
    assert.equal((cut.json.choices as Array<{ finish_reason: string }>)[0]!.finish_reason, "length");
    assert.equal((cut.json.usage as { completion_tokens: number }).completion_tokens, 1);
  });

  it("ends at a stop string, which is not part of the output, with finish_reason stop", async () => {
    // Greedy decoding is deterministic: find a piece of the free output and stop on it.
    const body = { model: "alveare-chat", messages: [{ role: "user", content: "hello" }], max_tokens: 30, temperature: 0 };
    const full = await postJson(`${server.url}/v1/chat/completions`, body);
    const text = (full.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    const stop = text.slice(10, 13);
    assert.equal(stop.length, 3);
    const cut = await postJson(`${server.url}/v1/chat/completions`, { ...body, stop: [stop] });
    const choice = (cut.json.choices as Array<{ finish_reason: string; message: { content: string } }>)[0]!;
    assert.equal(choice.finish_reason, "stop");
    assert.equal(choice.message.content, text.slice(0, text.indexOf(stop)));
  });

  it("varies the output between requests without a seed, and maps any integer seed", async () => {
    const body = { model: "alveare-code", messages: [{ role: "user", content: "write code" }], max_tokens: 12, temperature: 1 };
    const text = (r: { json: Record<string, unknown> }): string => (r.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    const unseeded = await Promise.all([1, 2, 3, 4].map(() => postJson(`${server.url}/v1/chat/completions`, body)));
    assert.ok(new Set(unseeded.map(text)).size > 1, "requests in the same second still sample differently");
    const outputs = [];
    for (const seed of [-5, 0, 2 ** 40]) {
      const r = await postJson(`${server.url}/v1/chat/completions`, { ...body, seed });
      assert.equal(r.status, 200);
      outputs.push(text(r));
    }
    assert.ok(new Set(outputs).size > 1, "different seeds give different samples");
  });

  it("gives the same output for the same seed", async () => {
    const body = { model: "alveare-code", messages: [{ role: "user", content: "write code" }], max_tokens: 12, temperature: 1, seed: 42 };
    const a = await postJson(`${server.url}/v1/chat/completions`, body);
    const b = await postJson(`${server.url}/v1/chat/completions`, body);
    const text = (r: typeof a): string => (r.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    assert.equal(text(a), text(b));
  });
});
