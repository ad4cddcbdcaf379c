import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type { CreateEmbeddingResponse } from "../src/api/types.js";
import type { EmbeddedEmbedder } from "../src/engines/embedded/embeddings.js";
import { embeddingsJson, shapeVector, toBase64 } from "../src/server/routes/embeddings.js";
import { assertCutAtShutdown, createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { connect } from "node:net";
import { once } from "node:events";
import { AccountService } from "../src/accounts/accounts.js";
import { createStore } from "../src/store/create-store.js";
import { CLI_CONTEXT } from "../src/store/audit-log.js";

const norm = (v: readonly number[]): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe("POST /v1/embeddings through the official openai package", () => {
  let server: TestServer;
  let client: OpenAI;
  let key: Awaited<ReturnType<typeof createKey>>;
  before(async () => {
    // A small context for the embed specialist, so "too long" is cheap to reach.
    server = await startTestServer(
      {
        specialists: { embed: { context_size: 96 } },
        plans: { metered: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", tokens_per_minute: 3000 } },
      },
      { gated: true },
    );
    key = await createKey(server, "professional");
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: key.key, maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  it("returns unit vectors, the same numbers in float and base64, deterministic for the same input", async () => {
    const input = ["The quarterly revenue grew.", "Bees make honey."];
    const float = await client.embeddings.create({ model: "alveare-embed", input, encoding_format: "float" });
    assert.equal(float.object, "list");
    assert.equal(float.model, "alveare-embed");
    assert.deepEqual(
      float.data.map((d) => [d.object, d.index]),
      [
        ["embedding", 0],
        ["embedding", 1],
      ],
    );
    const [a, b] = float.data.map((d) => d.embedding);
    assert.ok(a!.length > 1 && a!.length === b!.length);
    for (const v of [a!, b!]) assert.ok(Math.abs(norm(v) - 1) < 1e-5);
    assert.notDeepEqual(a, b);
    assert.ok(float.usage.prompt_tokens > 0 && float.usage.total_tokens === float.usage.prompt_tokens);

    // The SDK asks for base64 itself when no format is given, and decodes it.
    const decoded = await client.embeddings.create({ model: "alveare-embed", input });
    assert.deepEqual(
      decoded.data.map((d) => d.embedding),
      [a, b],
    );
    const raw = await client.embeddings.create({ model: "alveare-embed", input: input[0]!, encoding_format: "base64" });
    const text = raw.data[0]!.embedding as unknown as string;
    assert.equal(typeof text, "string");
    const bytes = Buffer.from(text, "base64");
    assert.deepEqual(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)), a);
  });

  it("truncates to `dimensions` and renormalises", async () => {
    const full = (await client.embeddings.create({ model: "alveare-embed", input: "honey", encoding_format: "float" })).data[0]!.embedding;
    const short = (await client.embeddings.create({ model: "alveare-embed", input: "honey", dimensions: 8, encoding_format: "float" })).data[0]!
      .embedding;
    assert.equal(short.length, 8);
    assert.ok(Math.abs(norm(short) - 1) < 1e-5);
    const head = full.slice(0, 8);
    const scale = norm(head);
    short.forEach((x, i) => assert.ok(Math.abs(x - head[i]! / scale) < 1e-5));
  });

  it("takes null for an optional parameter as absent: float vectors of the model's size", async () => {
    const r = await postJson(
      `${server.url}/v1/embeddings`,
      { model: "alveare-embed", input: "x", encoding_format: null, dimensions: null },
      key.auth,
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const full = (await client.embeddings.create({ model: "alveare-embed", input: "x", encoding_format: "float" })).data[0]!.embedding;
    assert.deepEqual((r.json.data as Array<{ embedding: number[] }>)[0]!.embedding, full);
  });

  it("refuses a batch longer than a token cap with a 400 naming input, not max_tokens", async () => {
    const metered = await createKey(server, "metered");
    const r = await postJson(
      `${server.url}/v1/embeddings`,
      { model: "alveare-embed", input: Array.from({ length: 400 }, () => "honey") },
      metered.auth,
    );
    assert.equal(r.status, 400);
    const error = r.json.error as { code: string; param: string; message: string };
    assert.deepEqual([error.code, error.param], ["invalid_parameter", "input"]);
    assert.doesNotMatch(error.message, /max_tokens/);
    const fits = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: ["honey", "bees"] }, metered.auth);
    assert.equal(fits.status, 200);
  });

  it("answers 400s that name the parameter", async () => {
    const refusal = async (body: Record<string, unknown>): Promise<[number, unknown, unknown]> => {
      const r = await postJson(`${server.url}/v1/embeddings`, body, key.auth);
      const error = r.json.error as { code: string; param: string };
      return [r.status, error.code, error.param];
    };
    assert.deepEqual(await refusal({ model: "alveare-embed", input: "x ".repeat(400) }), [400, "context_length_exceeded", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: ["ok", "x ".repeat(400)] }), [400, "context_length_exceeded", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: [] }), [400, "invalid_parameter", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: "" }), [400, "invalid_parameter", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: [[1, 2, 3]] }), [400, "invalid_parameter", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: Array.from({ length: 2049 }, () => "a") }), [400, "invalid_parameter", "input"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: "x", encoding_format: "hex" }), [400, "invalid_parameter", "encoding_format"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: "x", dimensions: 0 }), [400, "invalid_parameter", "dimensions"]);
    assert.deepEqual(await refusal({ model: "alveare-embed", input: "x", dimensions: 1_000_000 }), [400, "invalid_parameter", "dimensions"]);
    assert.deepEqual(await refusal({ model: "alveare-chat", input: "x" }), [400, "invalid_parameter", "model"]);
    assert.deepEqual(await refusal({ model: "alveare-nope", input: "x" }), [400, "model_not_found", "model"]);
    // The bare specialist id gets the same hint as on chat completions.
    const bare = await postJson(`${server.url}/v1/embeddings`, { model: "embed", input: "x" }, key.auth);
    assert.equal((bare.json.error as { code: string }).code, "model_not_found");
    assert.match((bare.json.error as { message: string }).message, /did you mean 'alveare-embed'\? GET \/v1\/models/);
    // …but no hint towards a chat model, which this route would refuse.
    const chatHint = await postJson(`${server.url}/v1/embeddings`, { model: "chat", input: "x" }, key.auth);
    assert.doesNotMatch((chatHint.json.error as { message: string }).message, /did you mean/);
    assert.deepEqual(await refusal({ input: "x" }), [400, "missing_parameter", "model"]);
    // …and the embeddings model is not a chat model.
    const chat = await postJson(
      `${server.url}/v1/chat/completions`,
      { model: "alveare-embed", messages: [{ role: "user", content: "x" }] },
      key.auth,
    );
    assert.deepEqual([chat.status, (chat.json.error as { param: string }).param], [400, "model"]);
    const infer = await postJson(`${server.url}/v1/infer`, { specialist: "embed", prompt: "x" }, key.auth);
    assert.deepEqual([infer.status, (infer.json.error as { param: string }).param], [400, "specialist"]);
  });

  it("counts one request per call and meters its tokens in /v1/usage", async () => {
    const fresh = await createKey(server, "scale");
    const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: fresh.key, maxRetries: 0 });
    const one = await sdk.embeddings.create({ model: "alveare-embed", input: ["a b c", "d e", "f"] });
    const two = await sdk.embeddings.create({ model: "alveare-embed", input: "g h" });
    const usage = (await (await fetch(`${server.url}/v1/usage`, { headers: fresh.auth })).json()) as Record<string, unknown>;
    assert.equal(usage.requests_used, 2);
    assert.equal(usage.tokens_used, one.usage.total_tokens + two.usage.total_tokens);
    assert.deepEqual(usage.by_specialist, { embed: 2 });
  });

  it("is listed for plans that include it, refused (403) for those that do not", async () => {
    const ids = async (k: Awaited<ReturnType<typeof createKey>>): Promise<string[]> =>
      ((await (await fetch(`${server.url}/v1/models`, { headers: k.auth })).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    assert.ok((await ids(key)).includes("alveare-embed"));
    assert.ok((await ids(await createKey(server, "scale"))).includes("alveare-embed"));
    for (const plan of ["solo", "starter"]) {
      const k = await createKey(server, plan);
      assert.equal((await ids(k)).includes("alveare-embed"), false);
      const r = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x" }, k.auth);
      assert.deepEqual([r.status, (r.json.error as { code: string }).code], [403, "specialist_not_in_plan"]);
      // It names the caller's own plan only: other plans (an operator's per-customer ones too) are not the caller's business.
      assert.equal((r.json.error as { message: string }).message, `Your plan (${plan}) does not include the specialist 'embed'.`);
      // Also with `dimensions` past the model's vectors: the plan's refusal, not the model's length.
      const long = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x", dimensions: 65_536 }, k.auth);
      assert.deepEqual([long.status, (long.json.error as { code: string }).code], [403, "specialist_not_in_plan"]);
    }
    const tooLong = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x", dimensions: 65_536 }, key.auth);
    assert.equal(tooLong.status, 400, "a key whose plan has the model hears the limit");
    const keyless = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x", dimensions: 65_536 }, {});
    assert.equal(keyless.status, 401);
  });
});

describe("an embeddings request whose key's plan changes while its body uploads", () => {
  it("is refused for its dimensions without holding the key's place: the next request is served", async () => {
    const plans = {
      chat_only: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: ["chat"], max_concurrent_requests: 1 },
      everything: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", max_concurrent_requests: 1 },
    };
    const server = await startTestServer({ plans }, { gated: true });
    try {
      const { accountId, key, auth } = await createKey(server, "chat_only");
      const body = JSON.stringify({ model: "alveare-embed", input: "x", dimensions: 65_536 });
      const { port, hostname } = new URL(server.url);
      const socket = connect(Number(port), hostname);
      await once(socket, "connect");
      let answer = "";
      socket.on("data", (chunk: Buffer) => (answer += chunk.toString()));
      socket.write(
        `POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      );
      // The key is checked with the headers; the plan changes before the body ends, past the gate's recheck age.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const stores = await createStore(server.config);
      try {
        await new AccountService(stores, server.config.plans).changePlan(CLI_CONTEXT, accountId, "everything");
      } finally {
        await stores.close();
      }
      socket.write(body);
      await once(socket, "close");
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /must be at most \d+, the length of this model's vectors/);
      // Before, that admission was never finished: its slot (one at a time) stayed taken for good.
      const next = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x" }, auth);
      assert.equal(next.status, 200, JSON.stringify(next.json));
    } finally {
      await server.close();
    }
  });
});

describe("an embedding under way", () => {
  const inputs = Array.from({ length: 2048 }, (_, i) => `sentence ${i} about the product, the revenue and the quarter`);
  const embedding = (server: TestServer, signal?: AbortSignal) =>
    fetch(`${server.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "alveare-embed", input: inputs }),
      ...(signal ? { signal } : {}),
    });
  const started = async (server: TestServer): Promise<void> => {
    const embedder = server.registry.get("embed")!.embedder as EmbeddedEmbedder;
    while (embedder.inFlight === 0) await new Promise((r) => setTimeout(r, 2));
  };

  it("finishes within a drain: the context is disposed only after it", async () => {
    const server = await startTestServer({});
    const answer = embedding(server);
    await started(server);
    await server.close(30_000);
    const r = await answer;
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { data: unknown[] }).data.length, inputs.length);
  });

  it("cut at the drain's deadline is the 503 overloaded a chat answer cut there is, given back, not a 499", async () => {
    const server = await startTestServer({}, { gated: true });
    const { key, accountId } = await createKey(server, "scale");
    const answer = fetch(`${server.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: "alveare-embed", input: inputs }),
    }).catch((error: unknown) => error);
    await started(server);
    await server.close(20);
    // Nothing of the answer was sent: its client is told the 503 the log says (the connection was dropped before).
    const r = (await answer) as Response;
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, "overloaded");
    assert.equal(r.headers.get("retry-after"), "1");
    await assertCutAtShutdown(
      server,
      server.logs.requests().find((l) => l.route === "/v1/embeddings"),
      accountId,
    );
  });

  it("whose client leaves is a 499, metered with the inputs embedded before it stopped", async () => {
    const server = await startTestServer({});
    try {
      const whole = (await (await embedding(server)).json()) as { usage: { prompt_tokens: number } };
      const leaving = new AbortController();
      const left = embedding(server, leaving.signal).catch(() => undefined);
      await started(server);
      leaving.abort();
      await left;
      const embedder = server.registry.get("embed")!.embedder as EmbeddedEmbedder;
      while (embedder.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
      let line: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && line === undefined; i++) {
        await new Promise((r) => setTimeout(r, 10));
        line = server.logs.requests().find((l) => l.route === "/v1/embeddings" && l.status !== 200);
      }
      assert.equal(line?.status, 499);
      assert.equal(line?.aborted, true);
      const tokens = line?.prompt_tokens as number;
      assert.ok(tokens < whole.usage.prompt_tokens, `${tokens} of ${whole.usage.prompt_tokens} tokens: stopped before the last input`);
    } finally {
      await server.close();
    }
  });
});

describe("the embeddings answer's JSON", () => {
  const vectorOf = (seed: number, length: number): number[] => Array.from({ length }, (_, i) => Math.sin(seed * 31 + i) / 7);

  it("is what JSON.stringify makes of the whole answer, floats and base64, with and without dimensions", async () => {
    const vectors = [vectorOf(1, 40), vectorOf(2, 40), vectorOf(3, 40)];
    for (const [dimensions, base64] of [
      [undefined, false],
      [undefined, true],
      [8, false],
      [8, true],
    ] as const) {
      const expected: CreateEmbeddingResponse = {
        object: "list",
        data: vectors.map((v, index) => {
          const shaped = shapeVector(v, dimensions);
          return { object: "embedding", index, embedding: base64 ? toBase64(shaped) : shaped };
        }),
        model: 'alveare-embed "quoted"',
        usage: { prompt_tokens: 12, total_tokens: 12 },
      };
      assert.equal(await embeddingsJson(vectors, dimensions, base64, 'alveare-embed "quoted"', 12), JSON.stringify(expected));
    }
    assert.equal(
      await embeddingsJson([], undefined, false, "m", 0),
      JSON.stringify({ object: "list", data: [], model: "m", usage: { prompt_tokens: 0, total_tokens: 0 } }),
    );
  });

  it("is written a slice per event-loop turn, so a big batch does not hold other requests", async () => {
    // 2,048 inputs of 896 dimensions: ~250 ms of writing in one piece.
    const vectors = Array.from({ length: 2048 }, (_, i) => vectorOf(i, 896));
    let turns = 0;
    let counting = true;
    const count = (): void => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    const json = await embeddingsJson(vectors, undefined, false, "m", 1);
    counting = false;
    assert.ok(turns >= 50, `other work ran in ${turns} turns while it was written`);
    assert.equal((JSON.parse(json) as { data: unknown[] }).data.length, 2048);
  });
});
