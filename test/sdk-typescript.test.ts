import assert from "node:assert/strict";
import { closedPort } from "./helpers/ports.js";
import { after, before, describe, it } from "node:test";
import {
  Alveare,
  AlveareError,
  InvalidBaseURLError,
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  MalformedApiKeyError,
  MissingApiKeyError,
  normalizeBaseURL,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTooLargeError,
  retryDelayMs,
  shouldRetry,
  ChatCompletionStream,
  type ChatCompletionChunk,
  type ChatCompletionCreateParams,
  type RetryEvent,
  VERSION,
} from "../sdk/typescript/src/index.js";
import type { ChatCompletionRequestBody } from "../src/api/schemas/chat-completions.js";
import { getEventListeners } from "node:events";
import { readFileSync } from "node:fs";
import { inspect } from "node:util";

import { FakeUpstream } from "./helpers/fake-upstream.js";
import { chunkEvent, errorBody, ScriptedApi } from "./helpers/scripted-api.js";
import { createKey, flakySpecialist, SDK_TEST_PLANS, startTestServer, type TestServer } from "./helpers/fixtures.js";

describe("TypeScript SDK: backoff schedule", () => {
  const none = new Headers();
  it("doubles from 0.5 s up to 8 s, with up to 25% jitter off", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((a) => retryDelayMs(a, none, 0, () => 0)),
      [500, 1000, 2000, 4000, 8000, 8000],
    );
    assert.deepEqual(
      [0, 1, 2].map((a) => retryDelayMs(a, none, 0, () => 1)),
      [375, 750, 1500],
    );
  });
  it("honours retry-after-ms, then Retry-After in seconds or as an HTTP date", () => {
    assert.equal(retryDelayMs(0, new Headers({ "retry-after-ms": "1234", "retry-after": "9" }), 0), 1234);
    assert.equal(retryDelayMs(3, new Headers({ "retry-after": "2" }), 0), 2000);
    const now = Date.parse("2026-11-25T10:00:00Z");
    assert.equal(retryDelayMs(0, new Headers({ "retry-after": "Wed, 25 Nov 2026 10:00:07 GMT" }), now), 7000);
  });
  it("gives no delay (surface the error) for a server wait longer than a minute", () => {
    assert.equal(
      retryDelayMs(0, new Headers({ "retry-after": "3600" }), 0, () => 0),
      undefined,
    );
    assert.equal(
      retryDelayMs(0, new Headers({ "retry-after-ms": "60001" }), 0, () => 0),
      undefined,
    );
    assert.equal(
      retryDelayMs(0, new Headers({ "retry-after": "60" }), 0, () => 0),
      60_000,
    );
  });
  it("retries 408, 409, 429 rate limits and 5xx, never a monthly quota or x-should-retry: false", () => {
    const h = new Headers();
    assert.deepEqual(
      [408, 409, 429, 500, 502, 503, 504].map((s) => shouldRetry(s, h, undefined)),
      Array(7).fill(true),
    );
    assert.deepEqual(
      [400, 401, 403, 404, 413].map((s) => shouldRetry(s, h, undefined)),
      Array(5).fill(false),
    );
    assert.equal(shouldRetry(429, h, "monthly_quota_exceeded"), false);
    assert.equal(shouldRetry(429, new Headers({ "x-should-retry": "false" }), "rate_limit_exceeded"), false);
    assert.equal(shouldRetry(400, new Headers({ "x-should-retry": "true" }), undefined), true);
  });
});

describe("TypeScript SDK: base URL and errors without a server", () => {
  it("drops trailing slashes and one trailing /v1, so OpenAI-style URLs work", () => {
    for (const url of ["http://h:8080", "http://h:8080/", "http://h:8080/v1", "http://h:8080/v1/", "http://h:8080//v1//"]) {
      assert.equal(normalizeBaseURL(url), "http://h:8080", url);
    }
    assert.equal(normalizeBaseURL("https://gw.example/alveare/v1"), "https://gw.example/alveare");
    assert.equal(new Alveare({ apiKey: "k", baseURL: "http://h:8080/v1" }).baseURL, "http://h:8080");
  });
  it("keeps the order option, then ALVEARE_BASE_URL, then the hosted URL", () => {
    process.env.ALVEARE_BASE_URL = "http://from-env:1/v1";
    try {
      assert.equal(new Alveare({ apiKey: "k", baseURL: "http://from-option:2" }).baseURL, "http://from-option:2");
      assert.equal(new Alveare({ apiKey: "k" }).baseURL, "http://from-env:1");
    } finally {
      delete process.env.ALVEARE_BASE_URL;
    }
    assert.equal(new Alveare({ apiKey: "k" }).baseURL, "https://api.alveare.ai");
  });
  it("waits 10 minutes per attempt unless told otherwise, as the OpenAI SDKs: a long answer on a CPU takes minutes, and a retry bills again", () => {
    const client = new Alveare({ apiKey: "k", baseURL: "http://127.0.0.1:1" });
    assert.deepEqual([client.timeout, client.maxRetries], [600_000, 2]);
    assert.equal(new Alveare({ apiKey: "k", baseURL: "http://127.0.0.1:1", timeout: 5 }).timeout, 5);
  });

  it("drops whitespace around the base URL, from the option or ALVEARE_BASE_URL, as around the key", () => {
    assert.equal(new Alveare({ apiKey: "k", baseURL: " http://h:8080/v1 \n" }).baseURL, "http://h:8080");
    process.env.ALVEARE_BASE_URL = "http://from-env:1/v1 \r\n";
    try {
      assert.equal(new Alveare({ apiKey: "k" }).baseURL, "http://from-env:1");
      process.env.ALVEARE_BASE_URL = "  ";
      assert.equal(new Alveare({ apiKey: "k" }).baseURL, "https://api.alveare.ai", "blank counts as unset");
    } finally {
      delete process.env.ALVEARE_BASE_URL;
    }
    assert.throws(() => new Alveare({ apiKey: "k", baseURL: " " }), InvalidBaseURLError);
  });
  it("refuses a base URL that is not http:// or https:// in the constructor, naming where it came from", () => {
    const refused = (make: () => unknown): InvalidBaseURLError => {
      try {
        make();
      } catch (error) {
        assert.ok(error instanceof InvalidBaseURLError, String(error));
        assert.ok(error instanceof AlveareError && !(error instanceof APIError));
        return error;
      }
      assert.fail("accepted");
    };
    assert.equal(
      refused(() => new Alveare({ apiKey: "k", baseURL: "127.0.0.1:18931" })).message,
      'Invalid base URL "127.0.0.1:18931" from the baseURL option: it must be an http:// or https:// URL such as "http://127.0.0.1:8080" (did you mean "http://127.0.0.1:18931"?).',
    );
    for (const url of ["localhost:8080", "ftp://h/x", "http:/h", "http://", "", "h/v1", "http://h/v1?x=1", "http://h#f"]) {
      refused(() => new Alveare({ apiKey: "k", baseURL: url }));
    }
    process.env.ALVEARE_BASE_URL = "127.0.0.1:1";
    try {
      assert.match(refused(() => new Alveare({ apiKey: "k" })).message, /from ALVEARE_BASE_URL/);
    } finally {
      delete process.env.ALVEARE_BASE_URL;
    }
    assert.equal(new Alveare({ apiKey: "k", baseURL: "HTTPS://H:1/v1" }).baseURL, "HTTPS://H:1");
  });
  it("refuses an empty baseURL outside a browser, and takes an empty ALVEARE_BASE_URL as unset, as in Python", () => {
    assert.throws(
      () => new Alveare({ apiKey: "k", baseURL: "" }),
      (e: unknown) =>
        e instanceof InvalidBaseURLError &&
        e.message ===
          'Invalid base URL "" from the baseURL option: it must be an http:// or https:// URL such as "http://127.0.0.1:8080" (leave it out to use ALVEARE_BASE_URL or the default).',
    );
    process.env.ALVEARE_BASE_URL = "";
    try {
      assert.equal(new Alveare({ apiKey: "k" }).baseURL, "https://api.alveare.ai");
      assert.throws(() => new Alveare({ apiKey: "k", baseURL: "" }), InvalidBaseURLError);
    } finally {
      delete process.env.ALVEARE_BASE_URL;
    }
  });
  it('in a browser page or worker, takes "" as the page\'s origin and resolves a relative baseURL against the page', () => {
    const scope = globalThis as { document?: unknown; WorkerGlobalScope?: unknown; location?: unknown };
    const inPage = <T>(global: "document" | "WorkerGlobalScope", run: () => T): T => {
      scope[global] = {};
      scope.location = { href: "https://app.example/some/page.html?q=1", origin: "https://app.example" };
      try {
        return run();
      } finally {
        delete scope[global];
        delete scope.location;
      }
    };
    const base = (baseURL: string, global: "document" | "WorkerGlobalScope" = "document"): string =>
      inPage(global, () => new Alveare({ apiKey: "k", baseURL }).baseURL);
    assert.equal(base(""), "https://app.example");
    assert.equal(base("", "WorkerGlobalScope"), "https://app.example");
    assert.equal(base("/"), "https://app.example");
    assert.equal(base("/v1"), "https://app.example");
    assert.equal(base("/gateway/v1/"), "https://app.example/gateway");
    assert.equal(base("api"), "https://app.example/some/api");
    assert.equal(base("../api", "WorkerGlobalScope"), "https://app.example/api");
    assert.equal(base("//other.example/x"), "https://other.example/x");
    assert.equal(base("http://127.0.0.1:8080/v1"), "http://127.0.0.1:8080");
    // A host:port without its scheme is still refused there: it is no relative reference.
    for (const url of ["127.0.0.1:8080", "localhost:8080", "ftp://h/x"]) {
      assert.throws(() => base(url), InvalidBaseURLError, url);
    }
    assert.match(
      inPage("document", () => {
        try {
          return String(new Alveare({ apiKey: "k", baseURL: "127.0.0.1:8080" }));
        } catch (e) {
          return String(e);
        }
      }),
      /did you mean "http:\/\/127\.0\.0\.1:8080"/,
    );
    // Outside a browser nothing is relative.
    assert.throws(() => new Alveare({ apiKey: "k", baseURL: "/gateway" }), InvalidBaseURLError);
  });
  it("raises MissingApiKeyError, an AuthenticationError, when no key is given", () => {
    delete process.env.ALVEARE_API_KEY;
    for (const options of [{}, { apiKey: "" }]) {
      const error = (() => {
        try {
          new Alveare(options);
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      assert.ok(error instanceof MissingApiKeyError);
      assert.ok(error instanceof AuthenticationError);
      assert.equal(error.code, "missing_api_key");
      assert.match(String(error), /^MissingApiKeyError: .*ALVEARE_API_KEY/);
    }
  });
  it("drops a line break pasted with the key, refuses what a header cannot carry without echoing the key, and never prints it", () => {
    assert.equal(new Alveare({ apiKey: "alv_live_abc\n", baseURL: "http://127.0.0.1:1" }).apiKey, "alv_live_abc");
    for (const apiKey of ["alv_live_a\r\nX-Injected: 1", "alv_live_clé", "alv live"]) {
      const error = (() => {
        try {
          new Alveare({ apiKey, baseURL: "http://127.0.0.1:1" });
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      assert.ok(error instanceof MalformedApiKeyError, String(error));
      assert.ok(error instanceof AuthenticationError);
      assert.ok(!String(error).includes("alv_live"), String(error));
    }
    const client = new Alveare({ apiKey: "alv_live_secretsecret", baseURL: "http://127.0.0.1:1" });
    assert.ok(!JSON.stringify(client).includes("secretsecret"));
    assert.ok(!inspect(client, { depth: 5 }).includes("secretsecret"));
  });
  it("gives RateLimitError.retryAfterMs from retry-after-ms, then Retry-After", () => {
    const limited = (headers: Record<string, string>): APIError =>
      APIError.fromResponse(429, { error: { code: "rate_limit_exceeded" } }, new Headers(headers));
    const both = limited({ "retry-after-ms": "1500", "retry-after": "2" });
    assert.ok(both instanceof RateLimitError);
    assert.equal(both.retryAfterMs, 1500);
    assert.equal((limited({ "retry-after": "3" }) as RateLimitError).retryAfterMs, 3000);
    assert.equal((limited({}) as RateLimitError).retryAfterMs, undefined);
  });
});

describe("TypeScript SDK against a real alveare serve", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  let key: string;
  before(async () => {
    const base = await fake.start();
    server = await startTestServer(
      {
        specialists: { flaky: flakySpecialist(base) },
        plans: SDK_TEST_PLANS,
      },
      { gated: true },
    );
    key = (await createKey(server, "professional")).key;
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });
  const client = (options: ConstructorParameters<typeof Alveare>[0] = {}) => new Alveare({ apiKey: key, baseURL: server.url, ...options });

  it("creates embeddings and reads tool calls", async () => {
    // Its own key: "calls every endpoint" counts its key's requests exactly.
    const c = client({ apiKey: (await createKey(server, "professional")).key });
    const floats = await c.embeddings.create({ model: "alveare-embed", input: ["bees", "honey"], dimensions: 4 });
    assert.deepEqual(
      floats.data.map((d) => d.index),
      [0, 1],
    );
    const vector = floats.data[0]!.embedding as number[];
    assert.equal(vector.length, 4);
    const packed = await c.embeddings.create({ model: "alveare-embed", input: "bees", dimensions: 4, encoding_format: "base64" });
    const bytes = Buffer.from(packed.data[0]!.embedding as string, "base64");
    assert.deepEqual(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 4)), vector);
    // null is "the default" for the optional parameters, as the server takes it (the SDK's types refused it).
    const defaults = await c.embeddings.create({ model: "alveare-embed", input: "bees", dimensions: null, encoding_format: null, user: null });
    assert.ok(Array.isArray(defaults.data[0]!.embedding) && defaults.data[0]!.embedding.length > 4);
    const inferred = await c.infer({ specialist: "classify", prompt: "I love it", max_tokens: null, temperature: null, top_p: null, seed: null });
    assert.ok(["positive", "negative", "neutral"].includes(inferred.result), inferred.result);
    const completion = await c.chat.completions.create({
      model: "alveare-chat",
      messages: [{ role: "user", content: "pick" }],
      tool_choice: "required",
      max_tokens: 300,
      tools: [
        {
          type: "function",
          function: {
            name: "pick",
            parameters: { type: "object", properties: { colour: { type: "string", enum: ["red", "blue"] } }, required: ["colour"] },
          },
        },
      ],
    });
    const choice = completion.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    const call = choice.message.tool_calls![0]!;
    assert.deepEqual([call.type, call.function.name], ["function", "pick"]);
    assert.ok(["red", "blue"].includes((JSON.parse(call.function.arguments) as { colour: string }).colour));
  });

  it("calls every endpoint", async () => {
    const c = client();
    const health = await c.health();
    assert.equal(health.status, "ok");
    const inferred = await c.infer({ specialist: "classify", prompt: "I love it", max_tokens: 8 });
    assert.ok(["positive", "negative", "neutral"].includes(inferred.result));
    assert.match(inferred.id, /^inf-/);
    const completion = await c.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    assert.equal(completion.object, "chat.completion");
    assert.ok(completion.usage.completion_tokens <= 4);
    const models = await c.models.list();
    assert.equal(models.data.length, 8);
    assert.deepEqual(
      await c.models.retrieve("alveare-chat"),
      models.data.find((m) => m.id === "alveare-chat"),
    );
    const missing = await c.models.retrieve("alveare-nothing/../x").catch((e: unknown) => e);
    assert.ok(missing instanceof NotFoundError, String(missing));
    assert.equal(missing.code, "model_not_found");
    const usage = await c.usage.get();
    assert.equal(usage.requests_used, 2);
    assert.equal(usage.by_specialist.classify, 1);
    // Each answer carries the server's id for its exchange, as the OpenAI SDKs give it, out of the answer's JSON.
    const ids = [health, inferred, completion, models, usage].map((answer) => answer._request_id);
    for (const id of ids) assert.match(String(id), /^req_\w+$/);
    assert.equal(new Set(ids).size, ids.length, "one id per exchange");
    assert.ok(!JSON.stringify(completion).includes("_request_id"));
    assert.ok(!Object.keys(completion).includes("_request_id"));
  });

  it("gives a stream the server's id for its exchange too", async () => {
    const stream = await client().chat.completions.create({
      model: "alveare-chat",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
      stream: true,
    });
    assert.match(String(stream._request_id), /^req_\w+$/);
    for await (const chunk of stream) assert.equal(chunk.object, "chat.completion.chunk");
  });

  it("sends a developer message, which the server reads as a system message", async () => {
    const completion = await client().chat.completions.create({
      model: "alveare-chat",
      messages: [
        { role: "developer", content: "Answer in one word." },
        { role: "user", content: "hi" },
      ],
      max_tokens: 2,
    });
    assert.equal(completion.object, "chat.completion");
    assert.ok(completion.usage.prompt_tokens > 0);
  });

  it("streams to the end, with usage when asked", async () => {
    const stream = await client().chat.completions.create({
      model: "alveare-chat",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
    assert.ok(chunks.at(-1)!.usage!.completion_tokens >= 1);
    assert.equal(chunks.at(-1)!.choices.length, 0);
  });

  it("takes params typed ChatCompletionCreateParams (stream a boolean) and answers as their stream says", async () => {
    // Code that builds its params as the exported type (stream?: boolean) must compile, as with the openai package.
    const params = (stream: boolean): ChatCompletionCreateParams => ({
      model: "alveare-chat",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 4,
      stream,
    });
    const whole = await client().chat.completions.create(params(false));
    assert.ok(!(whole instanceof ChatCompletionStream) && whole.object === "chat.completion");
    const streamed = await client().chat.completions.create(params(true));
    assert.ok(streamed instanceof ChatCompletionStream);
    let finish: string | null = null;
    for await (const chunk of streamed) finish = chunk.choices[0]?.finish_reason ?? finish;
    assert.ok(finish === "stop" || finish === "length", String(finish));
  });

  it("takes every chat parameter the server accepts, typed as the server checks it", async () => {
    // Compile-time: each field of the server's request schema is a field of the SDK's params, but `audio`, which the
    // server always refuses (a field missing here fails the build: "Type 'true' is not assignable to …").
    type Uncovered = Exclude<keyof ChatCompletionRequestBody, keyof ChatCompletionCreateParams | "audio">;
    const covered: [Uncovered] extends [never] ? true : Uncovered = true;
    assert.ok(covered);
    const params: ChatCompletionCreateParams = {
      model: "alveare-chat",
      messages: [
        { role: "developer", content: "Answer in one word.", name: "ops" },
        { role: "user", content: [{ type: "text", text: "hi" }], name: "ada" },
        { role: "assistant", content: null, refusal: "I can't help with that." },
        { role: "assistant", content: [{ type: "refusal", refusal: "Nor that." }] },
        { role: "user", content: "hi again" },
      ],
      max_tokens: null,
      max_completion_tokens: 3,
      temperature: 0,
      top_p: 1,
      seed: 7,
      stop: ["\n\n"],
      n: 1,
      logprobs: true,
      top_logprobs: 1,
      response_format: { type: "text" },
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      logit_bias: { "50256": -100 },
      user: "user-1234",
      store: false,
      metadata: { team: "bees" },
      modalities: ["text"],
      tools: null,
      tool_choice: null,
      parallel_tool_calls: null,
    };
    // What the server refuses is not typed: audio output, and OpenAI's deprecated functions.
    // @ts-expect-error only text is generated
    const audio: ChatCompletionCreateParams = { ...params, modalities: ["text", "audio"] };
    // @ts-expect-error send tools instead
    const functions: ChatCompletionCreateParams = { ...params, functions: [] };
    // @ts-expect-error refused
    const voice: ChatCompletionCreateParams = { ...params, audio: { voice: "alloy", format: "mp3" } };
    assert.ok(audio && functions && voice);
    const completion = await client().chat.completions.create({ ...params, stream: false });
    assert.equal(completion.object, "chat.completion");
    assert.ok(completion.usage.completion_tokens <= 3);
    assert.equal(completion.choices[0]!.logprobs!.content![0]!.top_logprobs.length, 1);
  });

  it("raises the server's 400 for a chat parameter of the wrong type as BadRequestError, with code, param and request id", async () => {
    const c = client({ maxRetries: 0 });
    const base = { model: "alveare-chat", messages: [{ role: "user" as const, content: "hi" }], max_tokens: 2 };
    // What plain JavaScript (or a cast) can send: the server's refusal, typed, whole and streamed.
    for (const [extra, param] of [
      [{ user: 42 }, "user"],
      [{ metadata: { n: 1 } }, "metadata"],
      [{ logit_bias: { hello: 1 } }, "logit_bias"],
      [{ frequency_penalty: "0.5" }, "frequency_penalty"],
      [{ modalities: ["text", "audio"] }, "modalities"],
      [{ stream: true, store: "yes" }, "store"],
      [{ messages: [{ role: "user", content: [] }] }, "messages[0].content"],
    ] as const) {
      const error = await c.chat.completions
        .create({ ...base, ...(extra as unknown as Partial<ChatCompletionCreateParams>) })
        .catch((e: unknown) => e);
      assert.ok(error instanceof BadRequestError, `${param}: ${String(error)}`);
      assert.deepEqual([error.status, error.type, error.code, error.param], [400, "invalid_request_error", "invalid_parameter", param]);
      assert.match(error.requestId ?? "", /^req_\w+$/);
      assert.match(error.message, new RegExp(`Invalid '${param.replace(/[[\].]/g, "\\$&")}'`));
    }
  });

  it("reads its key and base URL from the environment", async () => {
    process.env.ALVEARE_API_KEY = key;
    process.env.ALVEARE_BASE_URL = server.url;
    try {
      const c = new Alveare();
      assert.equal(c.baseURL, server.url);
      assert.equal((await c.health()).status, "ok");
    } finally {
      delete process.env.ALVEARE_API_KEY;
      delete process.env.ALVEARE_BASE_URL;
    }
    assert.throws(() => new Alveare(), MissingApiKeyError);
  });

  it("accepts a base URL ending in /v1 (no /v1/v1/…)", async () => {
    const c = client({ baseURL: `${server.url}/v1/` });
    assert.equal(c.baseURL, server.url);
    assert.equal((await c.health()).status, "ok");
    assert.equal((await c.models.list()).object, "list");
  });

  it("raises one error class per status, with the server's fields and request id", async () => {
    const c = client({ maxRetries: 0 });
    const bad = await c.infer({ specialist: "classify", prompt: "x", temperature: 3 }).catch((e: unknown) => e);
    assert.ok(bad instanceof BadRequestError);
    assert.equal(bad.status, 400);
    assert.equal(bad.type, "invalid_request_error");
    assert.equal(bad.code, "invalid_parameter");
    assert.equal(bad.param, "temperature");
    assert.match(bad.requestId ?? "", /^req_/);
    const unauthenticated = await new Alveare({ apiKey: `alv_live_${"x".repeat(40)}`, baseURL: server.url }).models.list().catch((e: unknown) => e);
    assert.ok(unauthenticated instanceof AuthenticationError);
    assert.equal(unauthenticated.code, "invalid_api_key");
    const solo = await createKey(server, "solo");
    const denied = await new Alveare({ apiKey: solo.key, baseURL: server.url }).infer({ specialist: "code", prompt: "x" }).catch((e: unknown) => e);
    assert.ok(denied instanceof PermissionDeniedError);
    assert.equal(denied.code, "specialist_not_in_plan");
    const missing = await c.json("GET", "/v1/nothing-here").catch((e: unknown) => e);
    assert.ok(missing instanceof NotFoundError);
    const big = await c.infer({ specialist: "classify", prompt: "x".repeat(2 * 1024 * 1024) }).catch((e: unknown) => e);
    assert.ok(big instanceof RequestTooLargeError);
  });

  it("gets the 413 for an oversized body sent on a connection another request just used, every time", async () => {
    const c = client({ maxRetries: 0 });
    for (let round = 0; round < 8; round++) {
      await c.models.list();
      const big = await c.infer({ specialist: "classify", prompt: "x".repeat(2 * 1024 * 1024) }).catch((e: unknown) => e);
      assert.ok(big instanceof RequestTooLargeError, `round ${round}: ${String(big)}`);
    }
  });

  it("retries a server error with backoff, then raises InternalServerError", async () => {
    fake.fault = "500";
    const before = fake.requests.length;
    const waits: number[] = [];
    const events: RetryEvent[] = [];
    const c = client({
      maxRetries: 2,
      sleep: async (ms) => {
        waits.push(ms);
      },
      onRetry: (event) => events.push(event),
    });
    const error = await c.infer({ specialist: "flaky", prompt: "x" }).catch((e: unknown) => e);
    assert.ok(error instanceof InternalServerError);
    assert.equal(error.status, 502);
    assert.equal(fake.requests.length - before, 3, "one attempt and two retries reached the upstream");
    assert.equal(waits.length, 2);
    assert.ok(waits[0]! >= 375 && waits[0]! <= 500 && waits[1]! >= 750 && waits[1]! <= 1000, `waits ${waits.join(", ")}`);
    assert.deepEqual(
      events.map((e) => e.attempt),
      [1, 2],
    );
    assert.deepEqual(
      events.map((e) => e.delayMs),
      waits,
    );
    assert.ok(events.every((e) => e.error instanceof InternalServerError && e.error.status === 502));
    assert.deepEqual([events[0]!.method, events[0]!.url], ["POST", `${server.url}/v1/infer`]);
  });

  it("stops retrying when the onRetry hook throws", async () => {
    fake.fault = "500";
    const before = fake.requests.length;
    const stop = new Error("stop here");
    const c = client({
      maxRetries: 3,
      sleep: async () => {},
      onRetry: () => {
        throw stop;
      },
    });
    await assert.rejects(c.infer({ specialist: "flaky", prompt: "x" }), (e) => e === stop);
    assert.equal(fake.requests.length - before, 1);
  });

  it("stops retrying when an async onRetry hook rejects, and awaits one that resolves before the wait", async () => {
    fake.fault = "500";
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const before = fake.requests.length;
      const stop = new Error("stop here");
      const rejecting = client({
        maxRetries: 3,
        sleep: async () => {},
        onRetry: async () => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          throw stop;
        },
      });
      await assert.rejects(rejecting.infer({ specialist: "flaky", prompt: "x" }), (e) => e === stop);
      assert.equal(fake.requests.length - before, 1, "no retry after the hook rejected");

      const order: string[] = [];
      const resolving = client({
        maxRetries: 1,
        sleep: async () => void order.push("wait"),
        onRetry: async () => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          order.push("hook done");
        },
      });
      await assert.rejects(resolving.infer({ specialist: "flaky", prompt: "x" }), InternalServerError);
      assert.deepEqual(order, ["hook done", "wait"]);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("takes timeout: Infinity as no deadline and a timeout past setTimeout's range as one, and refuses 0, negatives and NaN", async () => {
    fake.fault = "ok";
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on("warning", onWarning);
    try {
      for (const timeout of [Infinity, 2 ** 31, 30 * 24 * 3600 * 1000]) {
        const c = client({ timeout, maxRetries: 0 });
        assert.equal((await c.health()).status, "ok", `timeout ${timeout}`);
        assert.equal((await c.models.list({ timeout })).object, "list");
        const stream = await c.chat.completions.create({
          model: "alveare-chat",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
          stream: true,
        });
        let chunks = 0;
        for await (const chunk of stream) chunks += chunk.choices.length;
        assert.ok(chunks > 0);
      }
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.filter((w) => w.name === "TimeoutOverflowWarning").map((w) => w.message),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
    for (const timeout of [0, -1, Number.NaN]) {
      assert.throws(
        () => client({ timeout }),
        (e) => e instanceof RangeError && /timeout option .*over 0, or Infinity/.test(e.message),
        String(timeout),
      );
      await assert.rejects(client().health({ timeout }), (e) => e instanceof RangeError && /timeout of this call/.test(e.message), String(timeout));
    }
  });

  it("never retries once a stream has started delivering", async () => {
    fake.fault = "cut-stream";
    const before = fake.requests.length;
    const stream = await client({ maxRetries: 3 }).chat.completions.create({
      model: "alveare-flaky",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    let text = "";
    const error = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    })().catch((e: unknown) => e);
    assert.ok(error instanceof InternalServerError);
    assert.equal(text, "partial answer");
    assert.equal(fake.requests.length - before, 1);
  });

  it("raises APIConnectionError naming the host and the cause after retrying a refused connection", async () => {
    const waits: number[] = [];
    const port = await closedPort();
    const c = new Alveare({
      apiKey: key,
      baseURL: `http://127.0.0.1:${port}`,
      maxRetries: 1,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    const error = await c.health().catch((e: unknown) => e);
    assert.ok(error instanceof APIConnectionError);
    assert.equal(String(error), `APIConnectionError: could not connect to 127.0.0.1:${port} (ECONNREFUSED)`);
    assert.equal(waits.length, 1);
  });

  it("says how to reach your own server when a connection to the hosted default fails", async () => {
    const saved = process.env.ALVEARE_BASE_URL;
    delete process.env.ALVEARE_BASE_URL;
    try {
      // No network here: the fetch fails as undici's does when the name does not resolve.
      const offline = (): Promise<Response> =>
        Promise.reject(
          new TypeError("fetch failed", { cause: Object.assign(new Error("getaddrinfo ENOTFOUND api.alveare.ai"), { code: "ENOTFOUND" }) }),
        );
      const error = await new Alveare({ apiKey: key, maxRetries: 0, fetch: offline }).health().catch((e: unknown) => e);
      assert.equal(
        String(error),
        "APIConnectionError: could not connect to api.alveare.ai (ENOTFOUND); no baseURL was given, so this is the hosted service: " +
          "for your own server pass baseURL or set ALVEARE_BASE_URL",
      );
    } finally {
      if (saved !== undefined) process.env.ALVEARE_BASE_URL = saved;
    }
  });

  it("reports the server's wait on a rate-limit 429 as retryAfterMs", async () => {
    const burst = await createKey(server, "burst");
    const c = new Alveare({ apiKey: burst.key, baseURL: server.url, maxRetries: 0 });
    // Four at once against a plan of three per window: exactly one is turned away.
    const outcomes = await Promise.allSettled([0, 1, 2, 3].map((i) => c.infer({ specialist: "classify", prompt: `r${i}`, max_tokens: 1 })));
    const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected").map((o) => o.reason as unknown);
    assert.equal(rejected.length, 1);
    const limited = rejected[0];
    assert.ok(limited instanceof RateLimitError);
    assert.equal(limited.code, "rate_limit_exceeded");
    assert.ok(limited.retryAfterMs !== undefined && limited.retryAfterMs > 0 && limited.retryAfterMs <= 2000, `retryAfterMs ${limited.retryAfterMs}`);
    assert.equal(limited.retryAfterMs, Number(limited.headers?.get("retry-after-ms")));
  });

  it("waits out the real rate limiter's Retry-After and succeeds", async () => {
    const burst = await createKey(server, "burst");
    const waits: number[] = [];
    const c = new Alveare({
      apiKey: burst.key,
      baseURL: server.url,
      maxRetries: 3,
      sleep: (ms) => {
        waits.push(ms);
        return new Promise((r) => setTimeout(r, ms));
      },
    });
    const started = performance.now();
    for (let i = 0; i < 5; i++) {
      const r = await c.infer({ specialist: "classify", prompt: `n${i}`, max_tokens: 2 });
      assert.ok(r.result.length > 0);
    }
    assert.ok(waits.length >= 1, "the fourth request was limited and waited");
    assert.ok(
      waits.every((ms) => ms > 0 && ms <= 2000),
      `waits ${waits.join(", ")}`,
    );
    assert.ok(performance.now() - started >= 1000);
  });

  it("waits exactly the wait a chat completion's 429 names, then gets the answer", async () => {
    const burst = await createKey(server, "burst");
    const events: RetryEvent[] = [];
    const c = new Alveare({
      apiKey: burst.key,
      baseURL: server.url,
      maxRetries: 3,
      onRetry: (event) => void events.push(event),
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    });
    // Four at once against a plan of three per window: one is turned away, waits, and is answered.
    const answers = await Promise.all(
      [0, 1, 2, 3].map((i) => c.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: `w${i}` }], max_tokens: 1 })),
    );
    assert.ok(answers.every((a) => a.object === "chat.completion"));
    assert.ok(events.length >= 1, "one request was limited");
    for (const event of events) {
      assert.ok(event.error instanceof RateLimitError && event.error.code === "rate_limit_exceeded", String(event.error));
      const headers = event.error.headers!;
      // The server sends both; retry-after-ms is the finer, and Retry-After its whole seconds, rounded up.
      assert.equal(event.delayMs, Number(headers.get("retry-after-ms")));
      assert.equal(Number(headers.get("retry-after")), Math.max(1, Math.ceil(event.delayMs / 1000)));
      assert.equal(event.delayMs, event.error.retryAfterMs);
    }
  });

  it("does not retry a monthly-quota 429", async () => {
    const tiny = await createKey(server, "tiny");
    const waits: number[] = [];
    const c = new Alveare({
      apiKey: tiny.key,
      baseURL: server.url,
      maxRetries: 3,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    await c.infer({ specialist: "classify", prompt: "a", max_tokens: 2 });
    await c.infer({ specialist: "classify", prompt: "b", max_tokens: 2 });
    const error = await c.infer({ specialist: "classify", prompt: "c", max_tokens: 2 }).catch((e: unknown) => e);
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.code, "monthly_quota_exceeded");
    assert.equal(error.headers?.get("x-should-retry"), "false");
    assert.deepEqual(waits, []);
  });
});

describe("TypeScript SDK against a scripted server", () => {
  const api = new ScriptedApi();
  let origin: string;
  before(async () => {
    origin = await api.start();
  });
  after(async () => {
    await api.stop();
  });
  const client = (options: ConstructorParameters<typeof Alveare>[0] = {}) => new Alveare({ apiKey: "k", baseURL: origin, ...options });
  const caught = <T>(promise: Promise<T>): Promise<unknown> =>
    promise.then(
      () => undefined,
      (e: unknown) => e,
    );

  it("never follows a redirect: a typed error naming it, and nothing (no key) sent to where it points", async () => {
    const elsewhere = new ScriptedApi();
    const elsewhereOrigin = await elsewhere.start();
    try {
      for (const status of [301, 302, 307, 308]) {
        api.script = (_req, res) => void res.writeHead(status, { location: `${elsewhereOrigin}/v1/infer` }).end();
        const before = api.requests.length;
        const error = await caught(client({ maxRetries: 2 }).infer({ specialist: "s", prompt: "p" }));
        assert.ok(error instanceof APIError, String(error));
        assert.equal(error.status, status);
        assert.equal(error.code, "redirected");
        assert.match(error.message, new RegExp(`redirect to ${elsewhereOrigin}/v1/infer, which this SDK does not follow`));
        assert.equal(api.requests.length - before, 1, "not retried");
      }
      assert.equal(elsewhere.requests.length, 0);
    } finally {
      await elsewhere.stop();
    }
  });

  it('reads a 2xx whose body is not JSON as an APIError, and a stream\'s "error": null as no error', async () => {
    api.script = (_req, res) => void res.writeHead(200, { "content-type": "text/html" }).end("<html>a captive portal</html>");
    const notJson = await caught(client().health());
    assert.ok(notJson instanceof APIError, String(notJson));
    assert.match(notJson.message, /not JSON/);
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const withNullError = (content: string, finish: string | null) =>
        `data: ${JSON.stringify({ id: "chatcmpl-x", object: "chat.completion.chunk", created: 1, model: "alveare-chat", error: null, choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
      res.end(`${withNullError("one ", null)}${withNullError("two", "stop")}data: [DONE]\n\n`);
    };
    const stream = await client().chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(text, "one two");
    // A bare string error (TGI's {"error": "…"}) still ends the stream, with its message.
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`${chunkEvent("half")}data: ${JSON.stringify({ error: "Input validation error: too long" })}\n\n`);
    };
    const failing = await client().chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true });
    const thrown = await caught(
      (async () => {
        for await (const chunk of failing) void chunk;
      })(),
    );
    assert.ok(thrown instanceof APIError, String(thrown));
    assert.equal(thrown.message, "Input validation error: too long");
  });

  it('keeps the message of an error answer whose "error" is a bare string, as some proxies send it', async () => {
    api.script = (_req, res) =>
      void res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: "Model is overloaded", error_type: "overloaded" }));
    const error = await caught(client({ maxRetries: 0 }).infer({ specialist: "s", prompt: "p" }));
    assert.ok(error instanceof InternalServerError, String(error));
    assert.deepEqual([error.status, error.message, error.code], [503, "Model is overloaded", undefined]);
    api.script = (_req, res) => void res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: null }));
    const bare = await caught(client({ maxRetries: 0 }).infer({ specialist: "s", prompt: "p" }));
    assert.ok(bare instanceof InternalServerError, String(bare));
    assert.equal(bare.message, "HTTP 500");
  });

  it("stops at once, with APIUserAbortError, when the signal aborts during a retry's wait", async () => {
    api.script = (_req, res) =>
      void res.writeHead(503, { "content-type": "application/json", "retry-after-ms": "4000" }).end(errorBody("overloaded"));
    const before = api.requests.length;
    const started = performance.now();
    // The server asks for a 4 s wait: the abort at 300 ms falls well inside it, and a wait that
    // ignored the abort would take seconds longer than the bound below allows.
    const error = await caught(client({ maxRetries: 2 }).infer({ specialist: "s", prompt: "p" }, { signal: AbortSignal.timeout(300) }));
    const took = performance.now() - started;
    assert.ok(error instanceof APIUserAbortError, String(error));
    assert.ok(error instanceof APIError);
    assert.equal(error.name, "AbortError", "checks written for fetch's own abort error still see one");
    assert.equal((error.cause as Error).name, "TimeoutError", "the signal's reason is the cause");
    assert.ok(took < 2500, `took ${took} ms`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(api.requests.length - before, 1, "no request after the abort");
  });

  it("sends nothing for an already-aborted signal, and raises APIUserAbortError for an abort while waiting for the answer", async () => {
    api.script = () => undefined; // never answers
    const before = api.requests.length;
    const already = await caught(client().health({ signal: AbortSignal.abort() }));
    assert.ok(already instanceof APIUserAbortError, String(already));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const during = await caught(client({ maxRetries: 2 }).health({ signal: controller.signal }));
    assert.ok(during instanceof APIUserAbortError, String(during));
    assert.equal(api.requests.length - before, 1);
  });

  it("does not retry a POST whose 2xx body stalls or is cut: the server had served (and billed) it", { timeout: 20_000 }, async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "20" });
      res.write('{"resu'); // 6 of 20 bytes, then nothing
    };
    let before = api.requests.length;
    const retried: unknown[] = [];
    const started = performance.now();
    const stalled = await caught(
      client({ timeout: 1000, maxRetries: 2, sleep: async () => {}, onRetry: (e) => retried.push(e.error) }).infer({ specialist: "s", prompt: "p" }),
    );
    const took = performance.now() - started;
    assert.ok(stalled instanceof APIConnectionTimeoutError, String(stalled));
    assert.match(
      stalled.message,
      /^the response from 127\.0\.0\.1:\d+ did not arrive in full within 1000 ms; the server had answered 200, so the request was most likely served \(and billed\): not retried$/,
    );
    assert.equal(retried.length, 0);
    assert.equal(api.requests.length - before, 1);
    assert.ok(took >= 500 && took < 5000, `took ${took} ms`);

    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "20" });
      res.write('{"resu', () => res.destroy()); // 6 of 20 bytes, then the connection closes
    };
    before = api.requests.length;
    const cut = await caught(
      client({ maxRetries: 2, sleep: async () => {}, onRetry: (e) => retried.push(e.error) }).infer({ specialist: "s", prompt: "p" }),
    );
    assert.ok(cut instanceof APIConnectionError && !(cut instanceof APIConnectionTimeoutError), String(cut));
    assert.match(
      cut.message,
      /^the response from 127\.0\.0\.1:\d+ was cut off \(.+\); the server had answered 200, so the request was most likely served/,
    );
    assert.equal(retried.length, 0);
    assert.equal(api.requests.length - before, 1);
  });

  it("retries a GET whose 2xx body stalls, and any request whose error answer is cut, like any timeout", { timeout: 20_000 }, async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "20" });
      res.write('{"stat'); // 6 of 20 bytes, then nothing
    };
    let before = api.requests.length;
    const retried: unknown[] = [];
    const stalled = await caught(client({ timeout: 500, maxRetries: 1, sleep: async () => {}, onRetry: (e) => retried.push(e.error) }).health());
    assert.ok(stalled instanceof APIConnectionTimeoutError, String(stalled));
    assert.match(stalled.message, /^the response from 127\.0\.0\.1:\d+ did not arrive in full within 500 ms$/);
    assert.ok(retried.length === 1 && retried[0] instanceof APIConnectionTimeoutError);
    assert.equal(api.requests.length - before, 2);

    // A 503 whose body is cut was not served: the POST is retried.
    api.script = (_req, res) => {
      res.writeHead(503, { "content-type": "application/json", "content-length": "50" });
      res.write('{"err', () => res.destroy());
    };
    before = api.requests.length;
    const cut = await caught(client({ maxRetries: 1, sleep: async () => {} }).infer({ specialist: "s", prompt: "p" }));
    assert.ok(cut instanceof APIConnectionError, String(cut));
    assert.doesNotMatch(cut.message, /served/);
    assert.equal(api.requests.length - before, 2);
  });

  it("times out a stream that sends nothing for the timeout, between chunks", { timeout: 20_000 }, async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunkEvent("one"));
      // Well within the timeout of the chunk before: both timers run in this process, and a stall of the event loop
      // as long as the gap between them (a loaded machine) would fire them together.
      setTimeout(() => res.write(chunkEvent(" two")), 100);
    };
    const stream = await client({ timeout: 1500 }).chat.completions.create({
      model: "alveare-chat",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    let text = "";
    const started = performance.now();
    const error = await caught(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      })(),
    );
    const took = performance.now() - started;
    assert.ok(error instanceof APIConnectionTimeoutError, String(error));
    assert.match(error.message, /no data from 127\.0\.0\.1:\d+ for 1500 ms while streaming/);
    assert.equal(text, "one two");
    // About 1.6 s (the second chunk at 100, then 1,500 of silence): the timeout counts from the last chunk, not the
    // first (which would end it before 1.5 s); the upper bound leaves a loaded machine room.
    assert.ok(took >= 1500 && took < 8000, `took ${took} ms`);
  });

  it("raises APIUserAbortError from a stream when the call's signal aborts or abort() is called", { timeout: 20_000 }, async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunkEvent("one"));
    };
    const controller = new AbortController();
    const stream = await client().chat.completions.create(
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 100);
    const bySignal = await caught(
      (async () => {
        for await (const _ of stream);
      })(),
    );
    assert.ok(bySignal instanceof APIUserAbortError, String(bySignal));
    const other = await client().chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true });
    setTimeout(() => other.abort(), 100);
    const byAbort = await caught(
      (async () => {
        for await (const _ of other);
      })(),
    );
    assert.ok(byAbort instanceof APIUserAbortError, String(byAbort));
  });

  it("detaches a stream from the call's signal on abort(), also when it was never iterated", async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunkEvent("one"));
    };
    const controller = new AbortController();
    const listeners = (): number => getEventListeners(controller.signal, "abort").length;
    const stream = await client().chat.completions.create(
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true },
      { signal: controller.signal },
    );
    assert.equal(listeners(), 1, "the open stream listens to the signal");
    stream.abort();
    assert.equal(listeners(), 0, "abort() released it");
    const error = await caught(
      (async () => {
        for await (const _ of stream);
      })(),
    );
    assert.ok(error instanceof APIUserAbortError, String(error));
  });

  const streamText = async (stream: AsyncIterable<ChatCompletionChunk>): Promise<{ text: string; error: unknown }> => {
    let text = "";
    const error = await caught(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      })(),
    );
    return { text, error };
  };
  const streamed = (options: ConstructorParameters<typeof Alveare>[0] = {}) =>
    client(options).chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: true });

  it("raises APIConnectionError from a stream that ends before [DONE]; [DONE] and error events end it as before", async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(chunkEvent("one") + chunkEvent(" two")); // a clean close, but no [DONE]
    };
    const cut = await streamText(await streamed());
    assert.equal(cut.text, "one two");
    assert.ok(cut.error instanceof APIConnectionError, String(cut.error));
    assert.match(cut.error.message, /^the stream from 127\.0\.0\.1:\d+ ended before data: \[DONE\]/);

    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(chunkEvent("whole") + "data: [DONE]\n\n");
    };
    assert.deepEqual(await streamText(await streamed()), { text: "whole", error: undefined });

    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`${chunkEvent("half")}data: ${errorBody("internal_error")}\n\n`); // how the server ends a failed stream
    };
    const failed = await streamText(await streamed());
    assert.equal(failed.text, "half");
    assert.ok(failed.error instanceof InternalServerError, String(failed.error));
    assert.equal(failed.error.code, "internal_error");
  });

  it("raises APIConnectionError from a stream cut inside an event, and an APIError for an event that is not a JSON object", async () => {
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(chunkEvent("one") + chunkEvent(" two").slice(0, 40)); // a clean close in the middle of the second event
    };
    const cut = await streamText(await streamed());
    assert.equal(cut.text, "one");
    assert.ok(cut.error instanceof APIConnectionError, String(cut.error));
    assert.match(cut.error.message, /^the stream from 127\.0\.0\.1:\d+ ended inside an event .*: the answer is incomplete$/);

    for (const garbage of ["<html>502 Bad Gateway</html>", "null", "[1]"]) {
      api.script = (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream", "x-request-id": "req_garbage" });
        res.end(`${chunkEvent("half")}data: ${garbage}\n\n${chunkEvent("", "stop")}data: [DONE]\n\n`);
      };
      const { text, error } = await streamText(await streamed());
      assert.equal(text, "half");
      assert.ok(error instanceof APIError && !(error instanceof APIConnectionError), `${garbage}: ${String(error)}`);
      assert.deepEqual([error.status, error.requestId], [200, "req_garbage"]);
      assert.match(error.message, /sent an event whose data is not a JSON object/);
    }
  });

  it("stops reading a stream whose line or event outgrows 8 Mi characters: an APIError, not memory without end", { timeout: 20_000 }, async () => {
    const mib = "a".repeat(1024 * 1024);
    // 12 MiB each: one data line never ended, or 12 data lines of one event never ended by a blank line.
    for (const [what, pieces] of [
      ["a line that never ends", [`data: ${mib}`, ...Array<string>(11).fill(mib)]],
      ["an event of many data lines", Array<string>(12).fill(`data: ${mib}\n`)],
    ] as const) {
      api.script = (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream", "x-request-id": "req_endless" });
        res.write(chunkEvent("half"));
        // Writes as the client reads, then holds the connection open: only the bound ends the stream.
        const rest = [...pieces];
        const more = (): void => {
          while (rest.length > 0 && res.write(rest.shift()!));
          if (rest.length > 0) res.once("drain", more);
        };
        more();
      };
      const started = Date.now();
      const { text, error } = await streamText(await streamed({ timeout: 5_000 }));
      assert.equal(text, "half", what);
      assert.ok(error instanceof APIError && !(error instanceof APIConnectionError), `${what}: ${String(error)}`);
      assert.deepEqual([error.status, error.requestId], [200, "req_endless"]);
      assert.match(
        error.message,
        /^the stream from 127\.0\.0\.1:\d+ sent an event over 8388608 characters, more than any answer's event holds: it was read no further$/,
      );
      assert.ok(Date.now() - started < 4_000, `${what}: took ${Date.now() - started} ms`);
    }
  });

  it("ends a stream without [DONE] quietly when every choice has its finish_reason, as some servers and proxies send it", async () => {
    const usage = `data: ${JSON.stringify({ id: "chatcmpl-x", object: "chat.completion.chunk", created: 1, model: "alveare-chat", choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })}\n\n`;
    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(chunkEvent("one") + chunkEvent("", "stop") + usage); // finished, then usage, but no [DONE]
    };
    assert.deepEqual(await streamText(await streamed()), { text: "one", error: undefined });

    api.script = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(chunkEvent("a", null, 0) + chunkEvent("b", null, 1) + chunkEvent("", "stop", 0)); // choice 1 never finished
    };
    const open = await streamText(await streamed());
    assert.ok(open.error instanceof APIConnectionError, String(open.error));
    assert.match(open.error.message, /ended before data: \[DONE\]: the answer is incomplete \(choice 1 without a finish_reason\)$/);

    api.script = (_req, res) => void res.writeHead(200, { "content-type": "text/event-stream" }).end(": nothing\n\n");
    const empty = await streamText(await streamed());
    assert.ok(empty.error instanceof APIConnectionError, String(empty.error));
    assert.match(empty.error.message, /the answer is incomplete \(no choice arrived\)$/);
  });

  it("raises a stream's error event as the class and status its code implies", async () => {
    const cases: Array<[code: string, type: string, Class: typeof APIError, status: number]> = [
      ["overloaded", "server_error", InternalServerError, 503],
      ["dependency_unavailable", "server_error", InternalServerError, 503],
      ["rate_limit_exceeded", "rate_limit_error", RateLimitError, 429],
      ["upstream_error", "server_error", InternalServerError, 502],
      ["internal_error", "server_error", InternalServerError, 500],
      ["invalid_parameter", "invalid_request_error", BadRequestError, 400],
      ["something_newer", "server_error", InternalServerError, 500],
    ];
    for (const [code, type, Class, status] of cases) {
      api.script = (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream", "x-request-id": "req_stream" });
        res.end(`${chunkEvent("half")}data: ${errorBody(code, type)}\n\n`);
      };
      const { error } = await streamText(await streamed());
      assert.ok(error instanceof Class, `${code}: ${String(error)}`);
      assert.deepEqual([error.status, error.code, error.type, error.requestId], [status, code, type, "req_stream"], code);
    }
  });

  it("surfaces a 429 at once when its Retry-After is longer than the client waits", async () => {
    api.script = (_req, res) =>
      void res.writeHead(429, { "content-type": "application/json", "retry-after": "120" }).end(errorBody("rate_limit_exceeded", "rate_limit_error"));
    const before = api.requests.length;
    const retries: RetryEvent[] = [];
    const error = await caught(
      client({ maxRetries: 2, sleep: async () => {}, onRetry: (e) => retries.push(e) }).infer({ specialist: "s", prompt: "p" }),
    );
    assert.ok(error instanceof RateLimitError, String(error));
    assert.equal(error.retryAfterMs, 120_000);
    assert.deepEqual(retries, []);
    assert.equal(api.requests.length - before, 1);
  });

  it("sends User-Agent alveare-typescript/<version> with the runtime, and none in a browser", async () => {
    const manifest = JSON.parse(readFileSync(new URL("../../sdk/typescript/package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(VERSION, manifest.version);
    api.script = (_req, res) => void res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
    await client().health();
    assert.equal(api.requests.at(-1)!.headers["user-agent"], `alveare-typescript/${manifest.version} node/${process.versions.node}`);

    // In a browser (a global document, as in a page) the client leaves User-Agent to the browser.
    const sent: Headers[] = [];
    const recording: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers));
      return fetch(input, init);
    };
    (globalThis as { document?: unknown }).document = {};
    try {
      await client({ fetch: recording }).health();
    } finally {
      delete (globalThis as { document?: unknown }).document;
    }
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.get("user-agent"), null);
    assert.match(sent[0]!.get("authorization") ?? "", /^Bearer /);
  });
});
