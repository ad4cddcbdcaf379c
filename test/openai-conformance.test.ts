import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { createKey, postJson, SDK_TEST_PLANS, startTestServer, type TestServer } from "./helpers/fixtures.js";

/**
 * Every OpenAI-protocol response validates against OpenAI's own published
 * schemas: the ones test/fixtures/openai/extract-schemas.mjs took from OpenAI's
 * OpenAPI document (committed, so this runs without the document).
 */
const SCHEMAS = JSON.parse(readFileSync(new URL("../../test/fixtures/openai/openai-schemas.json", import.meta.url), "utf8")) as Record<
  string,
  unknown
>;

const ajv = new Ajv2020({ strict: false, allErrors: true, allowUnionTypes: true });
ajv.addFormat("unixtime", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= 0 });
for (const format of ["uri", "binary", "date", "double", "float", "int64"]) ajv.addFormat(format, true);
/**
 * The document still marks some schemas with OpenAPI 3.0's `nullable: true`
 * (the stream chunk's finish_reason and usage, for instance), meaning "or null".
 * JSON Schema has no such keyword, so it is spelt out as such here.
 */
const withNullsSpeltOut = JSON.parse(JSON.stringify(SCHEMAS), (_key: string, value: unknown) => {
  if (typeof value !== "object" || value === null || !("nullable" in value)) return value;
  const { nullable, ...rest } = value as Record<string, unknown>;
  return nullable === true ? { anyOf: [rest, { type: "null" }] } : rest;
}) as Record<string, unknown>;
ajv.addSchema({ ...withNullsSpeltOut, $id: "openai.json" });
const validators = new Map<string, ValidateFunction>();

function assertConforms(name: string, body: unknown): void {
  let validate = validators.get(name);
  if (validate === undefined) {
    validate = ajv.compile({ $ref: `openai.json#/components/schemas/${name}` });
    validators.set(name, validate);
  }
  assert.ok(validate(body), `${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 2000)}`);
}

/** The JSON events of an SSE response, [DONE] left out. */
async function streamEvents(url: string, body: unknown): Promise<unknown[]> {
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /text\/event-stream/);
  const text = await response.text();
  const data = text
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => line.slice("data: ".length));
  assert.equal(data.at(-1), "[DONE]");
  return data.slice(0, -1).map((d) => JSON.parse(d) as unknown);
}

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    parameters: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Rome"] } }, required: ["city"] },
  },
};

describe("OpenAI conformance: responses validate against OpenAI's published schemas", () => {
  let server: TestServer;
  let chatUrl: string;
  before(async () => {
    server = await startTestServer({ engine: { parallel: 4, queue: 16 } });
    chatUrl = `${server.url}/v1/chat/completions`;
  });
  after(async () => {
    await server.close();
  });

  const script = new URL("../../test/fixtures/openai/extract-schemas.mjs", import.meta.url).pathname;
  const source = new URL("../../../shared/openai/openapi.json", import.meta.url).pathname;
  it("the fixture is what the script extracts from OpenAI's document (when the document is here)", { skip: !existsSync(source) }, () => {
    const run = spawnSync(process.execPath, [script, "--check", source], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stdout + run.stderr);
  });

  it("the fixture holds the roots and everything they reference", () => {
    const schemas = (SCHEMAS.components as { schemas: Record<string, unknown> }).schemas;
    for (const root of SCHEMAS.roots as string[]) assert.ok(root in schemas, root);
    const refs = JSON.stringify(schemas).match(/#\/components\/schemas\/[A-Za-z0-9_.-]+/g) ?? [];
    for (const ref of refs) assert.ok(ref.slice("#/components/schemas/".length) in schemas, ref);
  });

  const bodies: Record<string, Record<string, unknown>> = {
    plain: { model: "alveare-chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 6 },
    logprobs: { model: "alveare-chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 6, logprobs: true, top_logprobs: 3 },
    "several choices": { model: "alveare-chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 4, n: 3, logprobs: true },
    "a label specialist": { model: "alveare-classify", messages: [{ role: "user", content: "Great stuff" }], logprobs: true, top_logprobs: 2 },
    tools: {
      model: "alveare-chat",
      messages: [{ role: "user", content: "Weather in Rome?" }],
      max_tokens: 40,
      tools: [WEATHER_TOOL],
      tool_choice: "required",
    },
    "tools with logprobs": {
      model: "alveare-chat",
      messages: [{ role: "user", content: "Weather in Rome?" }],
      max_tokens: 40,
      tools: [WEATHER_TOOL],
      tool_choice: "required",
      logprobs: true,
      top_logprobs: 2,
    },
    "a response format": { model: "alveare-extract", messages: [{ role: "user", content: "Ann is 30." }], max_tokens: 12 },
    "stop sequences": { model: "alveare-chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 30, stop: ["e", " t"], logprobs: true },
    "a json_schema": {
      model: "alveare-chat",
      messages: [{ role: "user", content: "Ann is 30." }],
      max_tokens: 40,
      response_format: {
        type: "json_schema",
        json_schema: { name: "person", strict: true, schema: { type: "object", properties: { age: { type: "integer" } }, required: ["age"] } },
      },
    },
  };

  for (const [name, body] of Object.entries(bodies)) {
    it(`chat completion: ${name}`, async () => {
      const { status, json } = await postJson(chatUrl, body);
      assert.equal(status, 200, JSON.stringify(json));
      assertConforms("CreateChatCompletionResponse", json);
      const choices = json.choices as Array<Record<string, unknown>>;
      assert.equal(choices.length, (body.n as number | undefined) ?? 1);
      for (const choice of choices) assert.equal(choice.logprobs === null, body.logprobs !== true);
    });

    it(`stream chunks: ${name}`, async () => {
      const events = await streamEvents(chatUrl, { ...body, stream: true, stream_options: { include_usage: true } });
      assert.ok(events.length >= 2);
      for (const event of events) assertConforms("CreateChatCompletionStreamResponse", event);
    });
  }

  it("the tool call answer carries tool_calls and validates", async () => {
    const { json } = await postJson(chatUrl, bodies.tools);
    const choice = (json.choices as Array<Record<string, unknown>>)[0]!;
    assert.ok(choice.finish_reason === "tool_calls" || choice.finish_reason === "length");
    assert.ok(Array.isArray((choice.message as Record<string, unknown>).tool_calls));
  });

  it("model list and its models", async () => {
    const response = await fetch(`${server.url}/v1/models`);
    assert.equal(response.status, 200);
    const list = (await response.json()) as { data: unknown[] };
    assertConforms("ListModelsResponse", list);
    assert.ok(list.data.length >= 6);
    for (const model of list.data) assertConforms("Model", model);
  });

  it("embeddings, float and base64, whole and shortened", async () => {
    for (const [encoding_format, dimensions] of [
      ["float", null],
      ["base64", null],
      ["float", 8],
      ["base64", 8],
    ] as const) {
      const body = { model: "alveare-embed", input: ["one", "two"], encoding_format, dimensions };
      const { status, json } = await postJson(`${server.url}/v1/embeddings`, body);
      assert.equal(status, 200, JSON.stringify(json));
      // OpenAI's schema describes only float vectors, though OpenAI itself answers base64 as a string too: checked decoded.
      if (encoding_format === "base64") {
        for (const item of json.data as Array<{ embedding: unknown }>) {
          assert.equal(typeof item.embedding, "string");
          const bytes = Buffer.from(item.embedding as string, "base64");
          item.embedding = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
        }
      }
      assertConforms("CreateEmbeddingResponse", json);
      if (dimensions !== null) for (const item of json.data as Array<{ embedding: unknown[] }>) assert.equal(item.embedding.length, dimensions);
    }
  });

  it("errors", async () => {
    const cases: Array<[string, unknown, number]> = [
      [chatUrl, { model: "alveare-nope", messages: [{ role: "user", content: "x" }] }, 400],
      [chatUrl, { model: "alveare-chat", messages: [] }, 400],
      [chatUrl, { model: "alveare-chat", messages: [{ role: "user", content: "x" }], top_logprobs: 2 }, 400],
      [chatUrl, "{not json", 400],
      [`${server.url}/v1/embeddings`, { model: "alveare-embed", input: [] }, 400],
      [`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x", dimensions: 100_000 }, 400],
      [`${server.url}/v1/completions`, { model: "alveare-chat", prompt: "x" }, 404],
    ];
    for (const [url, body, status] of cases) {
      const answer = await postJson(url, body);
      assert.equal(answer.status, status, JSON.stringify(answer.json));
      assertConforms("ErrorResponse", answer.json);
    }
    const missing = await fetch(`${server.url}/v1/models/alveare-nothing`);
    assert.equal(missing.status, 404);
    assertConforms("ErrorResponse", await missing.json());
  });
});

describe("OpenAI conformance: the gate's refusals validate as OpenAI's errors", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ plans: SDK_TEST_PLANS }, { gated: true });
  });
  after(async () => {
    await server.close();
  });

  it("401, 403, 413 and 429", async () => {
    const chatUrl = `${server.url}/v1/chat/completions`;
    const ask = { model: "alveare-chat", messages: [{ role: "user", content: "x" }], max_tokens: 2 };
    const solo = await createKey(server, "solo");
    const tiny = await createKey(server, "tiny");
    const cases: Array<[string, unknown, Record<string, string>, number]> = [
      [chatUrl, ask, {}, 401],
      [chatUrl, ask, { authorization: "Bearer alv_live_nope" }, 401],
      [`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x" }, solo.auth, 403],
      [chatUrl, { ...ask, messages: [{ role: "user", content: "x".repeat(1_100_000) }] }, solo.auth, 413],
      [chatUrl, ask, tiny.auth, 200],
      [chatUrl, ask, tiny.auth, 200],
      [chatUrl, { ...ask, stream: true }, tiny.auth, 429],
    ];
    for (const [url, body, headers, status] of cases) {
      const answer = await postJson(url, body, headers);
      assert.equal(answer.status, status, JSON.stringify(answer.json));
      assertConforms(status === 200 ? "CreateChatCompletionResponse" : "ErrorResponse", answer.json);
    }
  });
});

describe("OpenAI conformance: tool calls relayed from a remote upstream validate too", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  let chatUrl: string;
  before(async () => {
    const base = await fake.start();
    server = await startTestServer({
      specialists: { elsewhere: { description: "an upstream", system_prompt: "", remote: { base_url: base, model: "m" } } },
    });
    chatUrl = `${server.url}/v1/chat/completions`;
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  const ask = { model: "alveare-elsewhere", messages: [{ role: "user", content: "Weather in Rome?" }], tools: [WEATHER_TOOL] };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: "up",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  /** The calls of a whole answer, and of a stream's pieces joined, as a client reads them. */
  async function relayed(calls: Array<Record<string, unknown>>): Promise<Array<Array<{ id: string; arguments: string }>>> {
    fake.scripted = {
      whole: {
        choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: calls }, finish_reason: "tool_calls" }],
        usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
      },
      events: [chunk({ role: "assistant", tool_calls: calls.map((c, index) => ({ index, ...c })) }), chunk({}, "tool_calls")],
    };
    try {
      const { status, json } = await postJson(chatUrl, ask);
      assert.equal(status, 200, JSON.stringify(json));
      assertConforms("CreateChatCompletionResponse", json);
      const message = (json.choices as Array<{ message: { tool_calls: Array<{ id: string; function: { arguments: string } }> } }>)[0]!.message;
      const whole = message.tool_calls.map((c) => ({ id: c.id, arguments: c.function.arguments }));
      const events = await streamEvents(chatUrl, { ...ask, stream: true });
      for (const event of events) assertConforms("CreateChatCompletionStreamResponse", event);
      const streamed: Array<{ id: string; arguments: string }> = [];
      type Piece = { index: number; id?: string; function?: { arguments?: string } };
      for (const event of events as Array<{ choices: Array<{ delta: { tool_calls?: Piece[] } }> }>) {
        for (const { index, id, function: fn } of event.choices[0]?.delta.tool_calls ?? []) {
          streamed[index] ??= { id: id ?? "", arguments: "" };
          streamed[index].arguments += fn?.arguments ?? "";
        }
      }
      return [whole, streamed];
    } finally {
      fake.scripted = undefined;
    }
  }

  it("gives each upstream call without an id one of its own, so a tool message can name the call it answers", async () => {
    // llama-server has answered calls without an id, LM Studio with "".
    const args = JSON.stringify({ city: "Rome" });
    const calls = [
      { type: "function", function: { name: "get_weather", arguments: args } },
      { id: "", type: "function", function: { name: "get_weather", arguments: args } },
    ];
    for (const answer of await relayed(calls)) {
      assert.equal(answer.length, 2);
      for (const call of answer) assert.match(call.id, /^call_[A-Za-z0-9_-]+$/);
      assert.notEqual(answer[0]!.id, answer[1]!.id);
    }
  });

  it("relays arguments an upstream sent as an object as the JSON text OpenAI's clients parse", async () => {
    // llama-server has sent function.arguments as the object itself (ggml-org/llama.cpp#20198).
    const calls = [{ id: "call_up", type: "function", function: { name: "get_weather", arguments: { city: "Rome" } } }];
    for (const answer of await relayed(calls)) {
      assert.deepEqual(answer, [{ id: "call_up", arguments: '{"city":"Rome"}' }]);
    }
  });

  it("ends an answer that calls tools with finish_reason tool_calls, though the upstream said stop or function_call", async () => {
    // Gemini's OpenAI endpoint ends calls with "stop"; older servers with the deprecated "function_call".
    const calls = [{ id: "call_up", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } }];
    for (const upstreamFinish of ["stop", "function_call", null]) {
      fake.scripted = {
        whole: {
          choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: calls }, finish_reason: upstreamFinish }],
          usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
        },
        events: [
          chunk({ role: "assistant", tool_calls: calls.map((c, index) => ({ index, ...c })) }),
          ...(upstreamFinish === null ? [] : [chunk({}, upstreamFinish)]),
        ],
      };
      try {
        const { json } = await postJson(chatUrl, ask);
        const choice = (json.choices as Array<{ finish_reason: string; message: { tool_calls: unknown[] } }>)[0]!;
        assert.equal(choice.message.tool_calls.length, 1);
        assert.equal(choice.finish_reason, "tool_calls", String(upstreamFinish));
        const events = (await streamEvents(chatUrl, { ...ask, stream: true })) as Array<{ choices: Array<{ finish_reason: string | null }> }>;
        const finishes = events.flatMap((e) => e.choices.map((c) => c.finish_reason).filter((f) => f !== null));
        assert.deepEqual(finishes, ["tool_calls"], String(upstreamFinish));
      } finally {
        fake.scripted = undefined;
      }
    }
    // A call the upstream's max_tokens cut stays "length": its arguments may not parse.
    fake.scripted = {
      whole: { choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: calls }, finish_reason: "length" }] },
      events: [],
    };
    try {
      const { json } = await postJson(chatUrl, ask);
      assert.equal((json.choices as Array<{ finish_reason: string }>)[0]!.finish_reason, "length");
    } finally {
      fake.scripted = undefined;
    }
  });

  it("ends an answer without calls with stop, though the upstream said tool_calls", async () => {
    // A "tool_calls" finish tells a client to run message.tool_calls: with none there, it would fail on them.
    for (const calls of [[], null, ["not a call"]]) {
      fake.scripted = {
        whole: {
          choices: [{ index: 0, message: { role: "assistant", content: "I would call it.", tool_calls: calls }, finish_reason: "tool_calls" }],
        },
        events: [chunk({ role: "assistant", content: "I would call it.", tool_calls: calls }), chunk({}, "tool_calls")],
      };
      try {
        const { json } = await postJson(chatUrl, ask);
        assertConforms("CreateChatCompletionResponse", json);
        const choice = (json.choices as Array<{ finish_reason: string; message: Record<string, unknown> }>)[0]!;
        assert.equal(choice.message.tool_calls, undefined);
        assert.equal(choice.finish_reason, "stop", JSON.stringify(calls));
        const events = (await streamEvents(chatUrl, { ...ask, stream: true })) as Array<{ choices: Array<{ finish_reason: string | null }> }>;
        const finishes = events.flatMap((e) => e.choices.map((c) => c.finish_reason).filter((f) => f !== null));
        assert.deepEqual(finishes, ["stop"], JSON.stringify(calls));
      } finally {
        fake.scripted = undefined;
      }
    }
  });

  it("answers with the text of the content chunks Mistral's reasoning models send instead of a string", async () => {
    const thinking = { type: "thinking", thinking: [{ type: "text", text: "A greeting." }] };
    fake.scripted = {
      whole: {
        choices: [{ index: 0, message: { role: "assistant", content: [thinking, { type: "text", text: "Hello!" }] }, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
      },
      events: [
        chunk({ role: "assistant", content: [thinking] }),
        chunk({ content: [{ type: "text", text: "Hel" }] }),
        chunk({ content: "lo!" }),
        chunk({}, "stop"),
      ],
    };
    const plain = { model: "alveare-elsewhere", messages: [{ role: "user", content: "Hi" }] };
    try {
      const { status, json } = await postJson(chatUrl, plain);
      assert.equal(status, 200, JSON.stringify(json));
      assertConforms("CreateChatCompletionResponse", json);
      assert.equal((json.choices as Array<{ message: { content: string } }>)[0]!.message.content, "Hello!");
      const events = await streamEvents(chatUrl, { ...plain, stream: true });
      for (const event of events) assertConforms("CreateChatCompletionStreamResponse", event);
      const text = (events as Array<{ choices: Array<{ delta: { content?: string } }> }>).map((e) => e.choices[0]?.delta.content ?? "").join("");
      assert.equal(text, "Hello!");
    } finally {
      fake.scripted = undefined;
    }
  });
});
