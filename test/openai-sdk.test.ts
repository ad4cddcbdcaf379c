import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

describe("the official openai package against a real socket", () => {
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused-until-the-gate", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  it("creates a completion", async () => {
    const completion = await client.chat.completions.create({
      model: "alveare-summarise",
      messages: [{ role: "user", content: "Summarise this: The quarterly revenue grew." }],
      max_tokens: 12,
      temperature: 0.5,
    });
    assert.match(completion.id, /^chatcmpl-/);
    assert.equal(completion.object, "chat.completion");
    assert.equal(completion.model, "alveare-summarise");
    assert.equal(typeof completion.created, "number");
    const choice = completion.choices[0]!;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, "assistant");
    assert.equal(typeof choice.message.content, "string");
    assert.ok(["stop", "length"].includes(choice.finish_reason));
    const usage = completion.usage!;
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.ok(usage.completion_tokens <= 12);
  });

  for (const includeUsage of [true, false]) {
    it(`streams to the end (include_usage ${includeUsage})`, async () => {
      const stream = await client.chat.completions.create({
        model: "alveare-chat",
        messages: [
          { role: "system", content: "Be kind." },
          { role: "user", content: [{ type: "text", text: "Hello" }] },
        ],
        max_tokens: 10,
        stream: true,
        stream_options: { include_usage: includeUsage },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      const contentChunks = chunks.filter((c) => c.choices.length > 0);
      assert.equal(contentChunks[0]!.choices[0]!.delta.role, "assistant");
      assert.ok(new Set(chunks.map((c) => c.id)).size === 1 && chunks[0]!.id.startsWith("chatcmpl-"));
      assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
      const last = contentChunks.at(-1)!;
      assert.ok(last.choices[0]!.finish_reason === "length" || last.choices[0]!.finish_reason === "stop");
      assert.ok(contentChunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null));
      const usageChunks = chunks.filter((c) => c.choices.length === 0);
      if (includeUsage) {
        assert.equal(usageChunks.length, 1);
        assert.equal(chunks.at(-1), usageChunks[0]);
        const usage = usageChunks[0]!.usage!;
        assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
        assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 10);
      } else {
        assert.equal(usageChunks.length, 0);
        assert.ok(chunks.every((c) => c.usage === undefined || c.usage === null));
      }
    });
  }

  it("gathers each choice's log-probabilities once in the stream helper's final completion, as in a plain one", async () => {
    const request = {
      model: "alveare-chat",
      messages: [{ role: "user" as const, content: "Hello" }],
      max_tokens: 5,
      temperature: 0,
      n: 2,
      logprobs: true,
      top_logprobs: 2,
    };
    const plain = await client.chat.completions.create(request);
    const streamed = await client.chat.completions.stream(request).finalChatCompletion();
    assert.equal(streamed.choices.length, 2);
    for (const [i, choice] of streamed.choices.entries()) {
      const expected = plain.choices[i]!.logprobs!.content!;
      assert.ok(expected.length >= 1);
      // The helper copies a choice's first log-probabilities and appends them again: a first chunk with a token doubled it.
      const got = choice.logprobs!.content!;
      assert.deepEqual(
        got.map((e) => e.token),
        expected.map((e) => e.token),
      );
      // The same tokens in another batch: llama.cpp's kernels may differ in the last bits.
      got.forEach((e, k) => assert.ok(Math.abs(e.logprob - expected[k]!.logprob) < 1e-4, `${e.logprob} vs ${expected[k]!.logprob}`));
      assert.equal(choice.message.content, plain.choices[i]!.message.content);
    }
  });

  it("lists the models", async () => {
    const ids = [];
    for await (const model of client.models.list()) {
      assert.equal(model.object, "model");
      assert.equal(model.owned_by, "alveare");
      ids.push(model.id);
    }
    assert.deepEqual(ids.sort(), [
      "alveare-chat",
      "alveare-classify",
      "alveare-code",
      "alveare-embed",
      "alveare-extract",
      "alveare-qa",
      "alveare-summarise",
    ]);
  });

  it("retrieves one model, and raises NotFoundError for one that does not exist", async () => {
    const model = await client.models.retrieve("alveare-chat");
    assert.equal(model.id, "alveare-chat");
    assert.equal(model.object, "model");
    await assert.rejects(client.models.retrieve("alveare-nothing"), (error: unknown) => {
      assert.ok(error instanceof OpenAI.NotFoundError, String(error));
      assert.equal(error.code, "model_not_found");
      return true;
    });
  });

  it("turns our 400 into the SDK's BadRequestError with our message", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], temperature: 3 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.status, 400);
        assert.equal(error.code, "invalid_parameter");
        assert.equal(error.param, "temperature");
        assert.match(error.message, /Invalid 'temperature'/);
        return true;
      },
    );
  });

  it("honours response_format json_object through the SDK", async () => {
    const completion = await client.chat.completions.create({
      model: "alveare-chat",
      messages: [{ role: "user", content: "JSON please" }],
      max_tokens: 300,
      seed: 7,
      temperature: 0.3,
      response_format: { type: "json_object" },
    });
    const choice = completion.choices[0]!;
    if (choice.finish_reason === "stop") assert.equal(typeof JSON.parse(choice.message.content!), "object");
    else assert.ok(choice.message.content!.startsWith("{"));
  });
});
