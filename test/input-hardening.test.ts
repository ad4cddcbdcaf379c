import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { JSON_SCHEMA_LIMITS, TOOLS_SCHEMA_LIMITS } from "../src/server/json-schema-limits.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

/** `[[[…1…]]]` nested `depth` deep, as raw JSON text (JSON.stringify itself would overflow on it). */
const deepArray = (depth: number): string => `${"[".repeat(depth)}1${"]".repeat(depth)}`;

/** `{"type":"array","items":{…}}` nested `depth` deep, as raw JSON text. */
const deepSchema = (depth: number): string => `${'{"type":"array","items":'.repeat(depth)}{"type":"string"}${"}".repeat(depth)}`;

describe("Input hardening: hostile values get a 400, never a 500", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  const chat = (extra: string): string => `{"model":"alveare-chat","messages":[{"role":"user","content":"x"}],"max_tokens":2,${extra}}`;

  const expect400 = async (path: string, body: string, code: string, param: string, message?: RegExp): Promise<void> => {
    const r = await postJson(`${server.url}${path}`, body);
    assert.equal(r.status, 400, JSON.stringify(r.json).slice(0, 500));
    const error = r.json.error as Record<string, unknown>;
    assert.equal(error.code, code);
    assert.equal(error.param, param);
    assert.ok((error.message as string).length < 500, "the message does not echo the input");
    if (message) assert.match(error.message as string, message);
  };

  it("refuses max_tokens nested 100,000 arrays deep", () =>
    expect400("/v1/infer", `{"specialist":"classify","prompt":"x","max_tokens":${deepArray(100_000)}}`, "invalid_parameter", "max_tokens", /array/));
  it("refuses temperature nested 100,000 arrays deep", () =>
    expect400("/v1/chat/completions", chat(`"temperature":${deepArray(100_000)}`), "invalid_parameter", "temperature", /array/));
  it("does not echo a megabyte string back", () =>
    expect400("/v1/infer", JSON.stringify({ specialist: "classify", prompt: "x", seed: "9".repeat(500_000) }), "invalid_parameter", "seed"));

  const schemaParam = "response_format.json_schema.schema";
  const withSchema = (schema: string): string => chat(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":${schema}}}`);

  it("refuses a json_schema nested 5,000 deep, naming the depth limit", () =>
    expect400(
      "/v1/chat/completions",
      withSchema(deepSchema(5_000)),
      "invalid_parameter",
      schemaParam,
      new RegExp(`${JSON_SCHEMA_LIMITS.maxDepth} levels`),
    ));
  it("counts a schema's levels as the answer's, not as its JSON's: an object level is one, an anyOf none", async () => {
    // Before, each keyword's own object counted: 16 nested objects were refused as "more than 32 levels", and 8
    // nullable ones (anyOf [object, null]).
    const nested = (levels: number, wrap: (inner: unknown) => unknown): unknown => {
      let schema: unknown = { type: "string" };
      for (let i = 1; i < levels; i++) schema = wrap(schema);
      return schema;
    };
    const object = (inner: unknown) => ({ type: "object", properties: { k: inner }, required: ["k"] });
    const nullable = (inner: unknown) => ({ anyOf: [object(inner), { type: "null" }] });
    const array = (inner: unknown) => ({ type: "array", items: inner });
    const limit = JSON_SCHEMA_LIMITS.maxDepth;
    for (const [name, wrap] of [
      ["objects", object],
      ["nullable objects", nullable],
      ["arrays", array],
    ] as const) {
      const fits = await postJson(`${server.url}/v1/chat/completions`, JSON.parse(withSchema(JSON.stringify(nested(limit, wrap)))));
      assert.equal(fits.status, 200, `${name}: ${JSON.stringify(fits.json)}`);
      await expect400(
        "/v1/chat/completions",
        withSchema(JSON.stringify(nested(limit + 1, wrap))),
        "invalid_parameter",
        schemaParam,
        new RegExp(`${limit} levels of objects and arrays`),
      );
    }
    // Keywords that describe the same level (allOf here) count only as JSON, against a far larger bound.
    await expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify(nested(200, (inner) => ({ allOf: [inner] })))),
      "invalid_parameter",
      schemaParam,
      new RegExp(`${JSON_SCHEMA_LIMITS.maxDocumentDepth} levels of JSON`),
    );
  });
  it("refuses an enum over the limit, naming it", () => {
    const values = Array.from({ length: JSON_SCHEMA_LIMITS.maxEnumValues + 1 }, (_, i) => `v${i}`);
    return expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify({ enum: values })),
      "invalid_parameter",
      schemaParam,
      new RegExp(`limit is ${JSON_SCHEMA_LIMITS.maxEnumValues}`),
    );
  });
  it("refuses an empty enum, which no answer can meet", () =>
    expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify({ type: "string", enum: [] })),
      "invalid_parameter",
      schemaParam,
      /at least one value/,
    ));
  it("refuses an object with too many properties, naming the limit", () => {
    const properties = Object.fromEntries(Array.from({ length: JSON_SCHEMA_LIMITS.maxProperties + 1 }, (_, i) => [`p${i}`, { type: "string" }]));
    return expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify({ type: "object", properties })),
      "invalid_parameter",
      schemaParam,
      new RegExp(`limit is ${JSON_SCHEMA_LIMITS.maxProperties}`),
    );
  });
  it("refuses many small objects over the total property limit, naming it", () => {
    const small = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`q${i}`, { type: "integer" }]));
    const count = Math.ceil(JSON_SCHEMA_LIMITS.maxTotalProperties / 8);
    const properties = Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, { type: "object", properties: small }]));
    return expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify({ type: "object", properties })),
      "invalid_parameter",
      schemaParam,
      new RegExp(`more than ${JSON_SCHEMA_LIMITS.maxTotalProperties} properties`),
    );
  });
  it("refuses a schema over the size limit, naming it", () => {
    const schema = { type: "object", properties: { a: { type: "string", description: "d".repeat(JSON_SCHEMA_LIMITS.maxBytes) } } };
    return expect400(
      "/v1/chat/completions",
      withSchema(JSON.stringify(schema)),
      "invalid_parameter",
      schemaParam,
      new RegExp(`limit is ${JSON_SCHEMA_LIMITS.maxBytes}`),
    );
  });
  it("refuses tools whose schemas together are over the tools' limits, each one within its own", () => {
    // 128 tools of 500 properties each: every schema within its limits, 64,000 properties in all.
    const wide = Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`p${i}`, {}]));
    const tools = Array.from({ length: 128 }, (_, i) => ({
      type: "function",
      function: {
        name: `tool_${i}`,
        parameters: { type: "object", properties: { a: { type: "object", properties: wide }, b: { type: "object", properties: wide } } },
      },
    }));
    return expect400(
      "/v1/chat/completions",
      chat(`"tools":${JSON.stringify(tools)},"tool_choice":"required"`),
      "invalid_parameter",
      "tools",
      new RegExp(`more than ${TOOLS_SCHEMA_LIMITS.maxTotalProperties} properties`),
    );
  });
  it("takes 128 tools of ordinary size (this small context cannot hold their documentation, and says only that)", async () => {
    const properties = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`arg${i}`, { type: "string", description: "an argument" }]));
    const tools = Array.from({ length: 128 }, (_, i) => ({
      type: "function",
      function: { name: `tool_${i}`, description: "does one thing", parameters: { type: "object", properties, required: ["arg0"] } },
    }));
    const r = await postJson(`${server.url}/v1/chat/completions`, chat(`"tools":${JSON.stringify(tools)},"tool_choice":"required"`));
    assert.equal(r.status, 400, JSON.stringify(r.json).slice(0, 500));
    assert.equal((r.json.error as { code: string }).code, "context_length_exceeded");
    const few = await postJson(`${server.url}/v1/chat/completions`, chat(`"tools":${JSON.stringify(tools.slice(0, 4))},"tool_choice":"required"`));
    assert.equal(few.status, 200, JSON.stringify(few.json).slice(0, 500));
  });
  it("serves a schema at the limits", async () => {
    const values = Array.from({ length: JSON_SCHEMA_LIMITS.maxEnumValues }, (_, i) => `v${i}`);
    const r = await postJson(`${server.url}/v1/chat/completions`, withSchema(JSON.stringify({ enum: values })));
    assert.equal(r.status, 200, JSON.stringify(r.json).slice(0, 500));
    const content = (r.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    assert.ok(
      values.some((v) => JSON.stringify(v).startsWith(content.trim()) && content.trim().length > 0),
      content,
    );
  });

  for (const role of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
    it(`refuses the message role '${role}'`, () =>
      expect400(
        "/v1/chat/completions",
        JSON.stringify({
          model: "alveare-chat",
          messages: [
            { role: "user", content: "x" },
            { role, content: "y" },
          ],
        }),
        "invalid_parameter",
        "messages[1].role",
      ));
  }

  it("suggests the model name of a bare specialist id", () =>
    expect400(
      "/v1/chat/completions",
      JSON.stringify({ model: "chat", messages: [{ role: "user", content: "x" }] }),
      "model_not_found",
      "model",
      /did you mean 'alveare-chat'\?/,
    ));
  it("suggests the specialist id of a model name on /v1/infer", () =>
    expect400(
      "/v1/infer",
      JSON.stringify({ specialist: "alveare-classify", prompt: "x" }),
      "model_not_found",
      "specialist",
      // The list it points to names them as models: the message says how a specialist's id reads there.
      /did you mean 'classify'\? GET \/v1\/models lists the specialists you can use, as alveare-<specialist>\.$/,
    ));
  it("suggests the nearest specialist for a typo or the other spelling, on both routes", async () => {
    // Before, `summarize` (American spelling) and `clasify` got no hint at all.
    for (const [path, body, param, hint] of [
      ["/v1/infer", { specialist: "summarize", prompt: "x" }, "specialist", "summarise"],
      ["/v1/infer", { specialist: "clasify", prompt: "x" }, "specialist", "classify"],
      ["/v1/chat/completions", { model: "alveare-summarize", messages: [{ role: "user", content: "x" }] }, "model", "alveare-summarise"],
      ["/v1/chat/completions", { model: "sumarise", messages: [{ role: "user", content: "x" }] }, "model", "alveare-summarise"],
    ] as const) {
      const r = await postJson(`${server.url}${path}`, body);
      assert.equal(r.status, 400);
      const error = r.json.error as { code: string; param: string; message: string };
      assert.deepEqual([error.code, error.param], ["model_not_found", param]);
      assert.ok(error.message.includes(`; did you mean '${hint}'?`), error.message);
    }
    // An embeddings model is never offered to a chat route, which would refuse it.
    const embed = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-embd", messages: [{ role: "user", content: "x" }] });
    assert.doesNotMatch((embed.json.error as { message: string }).message, /did you mean/);
  });
  it("suggests nothing for a name that matches no specialist", async () => {
    const r = await postJson(`${server.url}/v1/chat/completions`, { model: "gpt-4", messages: [{ role: "user", content: "x" }] });
    assert.equal(r.status, 400);
    assert.doesNotMatch((r.json.error as { message: string }).message, /did you mean/);
  });
  it("does not take a prototype name for a specialist", () =>
    expect400("/v1/infer", JSON.stringify({ specialist: "constructor", prompt: "x" }), "model_not_found", "specialist"));
});

describe("Grammar cache: bounded by size", () => {
  it("keeps at most its budget whatever the number of distinct schemas", async () => {
    const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    const budget = 40_000;
    const cache = new GrammarCache(llama, budget);
    const schemaNumber = (n: number) => ({
      type: "json_schema" as const,
      schema: { enum: Array.from({ length: 40 }, (_, i) => `schema-${n}-value-${i}`) },
    });
    for (let n = 0; n < 60; n++) {
      await cache.get(schemaNumber(n));
      assert.ok(cache.sizeBytes <= budget, `after ${n + 1} schemas the cache holds ${cache.sizeBytes} bytes`);
    }
    assert.ok(cache.entries > 1 && cache.entries < 60, `${cache.entries} entries`);
    // The most recently used grammar is still cached: asking again returns the same grammar.
    const last = await cache.get(schemaNumber(59));
    assert.equal(await cache.get(schemaNumber(59)), last);
    // A schema that fails to compile leaves nothing behind.
    const before = cache.sizeBytes;
    await assert.rejects(cache.get({ type: "json_schema", schema: { type: "nonsense" } }));
    assert.equal(cache.sizeBytes, before);
  });
});
