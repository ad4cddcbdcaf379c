import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

describe("HTTP contract: errors and request ids", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      body_limit: 4096,
      specialists: { tiny: { description: "tiny context", system_prompt: "Be brief.", context_size: 64 } },
    });
  });
  after(async () => {
    await server.close();
  });

  const expectError = async (path: string, body: unknown, status: number, code: string, param: string | null, message?: RegExp): Promise<void> => {
    const r = await postJson(`${server.url}${path}`, body);
    assert.equal(r.status, status, JSON.stringify(r.json));
    const error = r.json.error as Record<string, unknown>;
    assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
    assert.equal(error.code, code);
    assert.equal(error.param, param);
    assert.equal(error.type, status === 404 || status < 500 ? "invalid_request_error" : "server_error");
    if (message) assert.match(error.message as string, message);
    assert.match(r.headers.get("x-request-id") ?? "", /^req_/);
  };

  it("rejects invalid JSON", () => expectError("/v1/infer", '{"specialist":', 400, "invalid_json", null));
  it("rejects an empty body", () => expectError("/v1/infer", "", 400, "invalid_json", null));
  it("rejects a body that is not an object", () => expectError("/v1/infer", "[1,2]", 400, "invalid_parameter", "body"));
  it("names a missing parameter", () => expectError("/v1/infer", { specialist: "classify" }, 400, "missing_parameter", "prompt", /prompt/));
  it("names a parameter of the wrong type", () =>
    expectError("/v1/infer", { specialist: "classify", prompt: 5 }, 400, "invalid_parameter", "prompt", /string/));
  it("rejects max_tokens out of range", () =>
    expectError("/v1/infer", { specialist: "classify", prompt: "x", max_tokens: 4097 }, 400, "invalid_parameter", "max_tokens", /4096/));
  it("rejects a fractional max_tokens", () =>
    expectError("/v1/infer", { specialist: "classify", prompt: "x", max_tokens: 1.5 }, 400, "invalid_parameter", "max_tokens"));
  it("rejects temperature out of range", () =>
    expectError("/v1/infer", { specialist: "classify", prompt: "x", temperature: 2.5 }, 400, "invalid_parameter", "temperature"));
  it("takes a seed anywhere in OpenAI's signed 64-bit range, and refuses one past it", async () => {
    for (const seed of ["9223372036854775807", "-9223372036854775808"]) {
      const r = await postJson(`${server.url}/v1/infer`, `{"specialist":"classify","prompt":"x","max_tokens":2,"seed":${seed}}`);
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    // The range as written, not as doubles print it (-9223372036854776000): the probe's client could not tell.
    await expectError(
      "/v1/infer",
      '{"specialist":"classify","prompt":"x","seed":18446744073709551616}',
      400,
      "invalid_parameter",
      "seed",
      /must be at least -9223372036854775808 and at most 9223372036854775807, got 18446744073709551616\./,
    );
    // The value a client sent is its own: 2^63 is not shown as the range's top, nor 1e300 as 301 digits.
    await expectError(
      "/v1/infer",
      '{"specialist":"classify","prompt":"x","max_tokens":9223372036854775808}',
      400,
      "invalid_parameter",
      "max_tokens",
      /got 9223372036854775808\./,
    );
    await expectError(
      "/v1/infer",
      '{"specialist":"classify","prompt":"x","max_tokens":1e300}',
      400,
      "invalid_parameter",
      "max_tokens",
      /got 1e\+300\./,
    );
  });
  it("rejects top_p of zero", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], top_p: 0 },
      400,
      "invalid_parameter",
      "top_p",
    ));
  it("rejects an unknown specialist", () =>
    expectError("/v1/infer", { specialist: "poetry", prompt: "x" }, 400, "model_not_found", "specialist", /^The specialist 'poetry' does not exist/));
  it("names a specialist given as a model a model, and suggests its model name", () =>
    expectError(
      "/v1/chat/completions",
      { model: "chat", messages: [{ role: "user", content: "x" }] },
      400,
      "model_not_found",
      "model",
      /^The model 'chat' does not exist; did you mean 'alveare-chat'\? GET \/v1\/models lists the models you can use\.$/,
    ));
  it("suggests the model a name in other case meant", () =>
    expectError(
      "/v1/chat/completions",
      { model: "ALVEARE-CHAT", messages: [{ role: "user", content: "x" }] },
      400,
      "model_not_found",
      "model",
      /^The model 'ALVEARE-CHAT' does not exist; did you mean 'alveare-chat'\?/,
    ));
  it("rejects an unknown model", () =>
    expectError("/v1/chat/completions", { model: "gpt-4", messages: [{ role: "user", content: "x" }] }, 400, "model_not_found", "model", /gpt-4/));
  it("rejects a bad message role", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "robot", content: "x" }] },
      400,
      "invalid_parameter",
      "messages[0].role",
    ));
  it("rejects empty messages", () =>
    expectError("/v1/chat/completions", { model: "alveare-chat", messages: [] }, 400, "invalid_parameter", "messages"));
  it("rejects a non-text content part", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
      400,
      "invalid_parameter",
      "messages[0].content[0]",
    ));
  it("rejects more than 4 stop strings", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], stop: ["a", "b", "c", "d", "e"] },
      400,
      "invalid_parameter",
      "stop",
    ));
  it("rejects n other than 1", () =>
    expectError("/v1/chat/completions", { model: "alveare-chat", messages: [{ role: "user", content: "x" }], n: 9 }, 400, "invalid_parameter", "n"));
  it("rejects an unknown response_format", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], response_format: { type: "xml" } },
      400,
      "invalid_parameter",
      "response_format.type",
    ));
  it("rejects a json_schema format without a schema", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema", json_schema: { name: "x" } } },
      400,
      "missing_parameter",
      "response_format.json_schema.schema",
    ));
  it("coerces nothing: a number sent as a string is refused", () =>
    expectError(
      "/v1/infer",
      { specialist: "classify", prompt: "x", max_tokens: "5" },
      400,
      "invalid_parameter",
      "max_tokens",
      /expected an integer, got string "5"/,
    ));
  for (const role of ["constructor", "__proto__", "toString"]) {
    it(`rejects the message role ${role}, which only an object's prototype knows`, () =>
      expectError(
        "/v1/chat/completions",
        { model: "alveare-chat", messages: [{ role, content: "x" }] },
        400,
        "invalid_parameter",
        "messages[0].role",
      ));
  }
  it("rejects a stream flag that is not a boolean", () =>
    expectError(
      "/v1/chat/completions",
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], stream: "yes" },
      400,
      "invalid_parameter",
      "stream",
    ));
  it("rejects a prompt longer than the specialist's context", () =>
    expectError(
      "/v1/infer",
      { specialist: "tiny", prompt: "word ".repeat(200) },
      400,
      "context_length_exceeded",
      "prompt",
      /context holds 64 tokens and your prompt takes \d+, leaving no room for an answer/,
    ));
  it("answers 413 for an oversized body", () =>
    expectError("/v1/infer", { specialist: "classify", prompt: "x".repeat(5000) }, 413, "request_too_large", null));
  it("answers 404 in the error shape for an unknown route", async () => {
    const r = await fetch(`${server.url}/v2/everything`);
    assert.equal(r.status, 404);
    const body = (await r.json()) as { error: { code: string } };
    assert.equal(body.error.code, "not_found");
  });
  it("answers 404, not a body error, for an unknown route or method whatever the body", async () => {
    for (const [method, path] of [
      ["POST", "/v2/everything"],
      ["DELETE", "/v1/chat/completions"],
    ]) {
      const r = await fetch(`${server.url}${path}`, { method, headers: { "content-type": "application/json" }, body: "this is not json" });
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, "not_found");
    }
  });
  it("says which method a known path takes (curl without -d sends a GET)", async () => {
    for (const [method, path, takes] of [
      ["GET", "/v1/infer", "POST"],
      ["GET", "/v1/chat/completions", "POST"],
      ["DELETE", "/v1/models/alveare-chat", "GET"],
    ] as const) {
      const r = await fetch(`${server.url}${path}`, { method });
      assert.equal(r.status, 404, `${method} ${path}`);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, "not_found");
      assert.equal(error.message, `Unknown route: ${method} ${path}; this path takes ${takes}.`);
    }
    const unknown = (await (await fetch(`${server.url}/v1/nothing`)).json()) as { error: { message: string } };
    assert.equal(unknown.error.message, "Unknown route: GET /v1/nothing");
  });
  it("points the OpenAI SDK's responses and legacy completions calls at chat completions", async () => {
    for (const path of ["/v1/responses", "/v1/completions"]) {
      const r = await postJson(`${server.url}${path}`, { model: "alveare-chat", input: "hi" });
      assert.equal(r.status, 404, path);
      const error = r.json.error as { code: string; message: string };
      assert.equal(error.code, "not_found");
      assert.equal(
        error.message,
        `Unknown route: POST ${path}; this server serves OpenAI's Chat Completions API (POST /v1/chat/completions), not the Responses API or legacy completions.`,
      );
    }
  });
  it("points a client whose base URL lacks /v1, or ends in a slash, at the path it meant", async () => {
    // The commonest slips in pointing a client at a compatible server: both were a bare "Unknown route".
    const v1 = "The API's paths start with /v1: give clients the base URL http://<host>:<port>/v1";
    const slash = 'The address has "//" in it: a base URL ending in "/" joined with a path starting with "/"';
    for (const [method, path, meant, why] of [
      ["POST", "/chat/completions", "/v1/chat/completions", v1],
      ["GET", "/models", "/v1/models", v1],
      ["POST", "/infer", "/v1/infer", v1],
      ["POST", "/v1//chat/completions", "/v1/chat/completions", slash],
      ["GET", "//v1/models", "/v1/models", slash],
      ["GET", "/v1/v1/models", "/v1/models", "The address has /v1 twice: a base URL ending in /v1 joined with a path starting with /v1"],
    ] as const) {
      const r = await fetch(`${server.url}${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: method === "GET" ? undefined : "{}",
      });
      assert.equal(r.status, 404, `${method} ${path}`);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, "not_found");
      assert.equal(error.message, `Unknown route: ${method} ${path}; did you mean ${meant}? ${why}.`);
    }
    // A trailing slash (some clients add one): the path without it. GET /v1/models/ read as the model "".
    for (const [method, path] of [
      ["POST", "/v1/chat/completions/"],
      ["GET", "/v1/models/"],
      ["GET", "/health/"],
    ] as const) {
      const r = await fetch(`${server.url}${path}`, { method, body: method === "GET" ? undefined : "{}" });
      assert.equal(r.status, 404, path);
      const { error } = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, "not_found");
      assert.equal(error.message, `Unknown route: ${method} ${path}; did you mean ${path.slice(0, -1)}? (without the trailing slash).`);
    }
    // The chat route's last word left off (a base URL taken for the endpoint).
    for (const path of ["/v1/chat", "/v1/chat/", "/chat"]) {
      const r = await fetch(`${server.url}${path}`, { method: "POST", body: "{}" });
      assert.equal(r.status, 404, path);
      const { error } = (await r.json()) as { error: { message: string } };
      assert.equal(error.message, `Unknown route: POST ${path}; did you mean /v1/chat/completions? (the chat route's full path).`);
    }
    // An OPTIONS outside /v1 is suggested nothing: every /v1 path takes a preflight, so /v1/health would "match".
    for (const path of ["/health", "/x"]) {
      const r = await fetch(`${server.url}${path}`, { method: "OPTIONS" });
      assert.equal(r.status, 404, path);
      assert.equal(((await r.json()) as { error: { message: string } }).error.message, `Unknown route: OPTIONS ${path}`);
    }
    // A key in the path stays masked in the suggestion too, and a long one is cut.
    const key = `alv_live_${"k".repeat(40)}`;
    const { error } = (await (await fetch(`${server.url}/models/${key}`)).json()) as { error: { message: string } };
    assert.ok(!error.message.includes(key), error.message);
    assert.match(error.message, /; did you mean \/v1\/models\/alv_live_…/);
    // A path this server does not serve under /v1 either is said so, not suggested.
    for (const path of ["/completions", "/responses"]) {
      const { error: unserved } = (await (await fetch(`${server.url}${path}`, { method: "POST", body: "{}" })).json()) as {
        error: { message: string };
      };
      assert.match(unserved.message, /; this server serves OpenAI's Chat Completions API \(POST \/v1\/chat\/completions\)/, path);
    }
    // Only a path that takes the request's method is suggested: DELETE /v1/models/x is no route either.
    const { error: deleted } = (await (await fetch(`${server.url}/models/alveare-chat`, { method: "DELETE" })).json()) as {
      error: { message: string };
    };
    assert.equal(deleted.message, "Unknown route: DELETE /models/alveare-chat");
    // Nothing to suggest: no hint.
    const none = (await (await fetch(`${server.url}/nothing/here`)).json()) as { error: { message: string } };
    assert.equal(none.error.message, "Unknown route: GET /nothing/here");
  });
  it("says a path segment over 100 characters is too long, not that the URL's encoding is broken", async () => {
    const r = await fetch(`${server.url}/v1/models/${"a".repeat(101)}`);
    assert.equal(r.status, 400);
    assert.deepEqual(((await r.json()) as { error: unknown }).error, {
      message: "A path segment is longer than 100 characters; no id or model name is that long.",
      type: "invalid_request_error",
      code: "invalid_request",
      param: null,
    });
  });

  it("says that metrics have a listener of their own when a scraper asks the API's port", async () => {
    // Before, GET /metrics here was a bare "Unknown route", with nothing to say where they are.
    const { error } = (await (await fetch(`${server.url}/metrics`)).json()) as { error: { code: string; message: string } };
    assert.equal(error.code, "not_found");
    assert.equal(
      error.message,
      "Unknown route: GET /metrics; metrics are never served on the API's port: they have a listener of their own (ALVEARE_METRICS_HOST, ALVEARE_METRICS_PORT; 0 turns it off).",
    );
  });
  it("never echoes a long path in full: 40 characters at most", async () => {
    const r = await fetch(`${server.url}/${"a".repeat(8000)}`);
    assert.equal(r.status, 404);
    const body = (await r.json()) as { error: { message: string } };
    assert.equal(body.error.message, `Unknown route: GET /${"a".repeat(39)}…`);
  });
  it("accepts JSON sent without a content type (curl -d)", async () => {
    const r = await fetch(`${server.url}/v1/infer`, {
      method: "POST",
      body: JSON.stringify({ specialist: "classify", prompt: "ok", max_tokens: 4 }),
    });
    assert.equal(r.status, 200);
  });
  it("ignores a byte-order mark before the JSON, as JSON's RFC allows (Windows tools write one)", async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const send = (rest: string): Promise<Response> =>
      fetch(`${server.url}/v1/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: Buffer.concat([bom, Buffer.from(rest)]),
      });
    assert.equal((await send(JSON.stringify({ specialist: "classify", prompt: "ok", max_tokens: 4 }))).status, 200);
    // Only one mark, and only before JSON: anything else is still refused as the JSON it is not.
    for (const rest of ["{not json", `\ufeff${JSON.stringify({ specialist: "classify", prompt: "ok" })}`]) {
      const r = await send(rest);
      assert.equal(r.status, 400, rest);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, "invalid_json");
    }
  });
  it("keeps a client's own x-request-id and makes one otherwise", async () => {
    const mine = await fetch(`${server.url}/health`, { headers: { "x-request-id": "trace-123" } });
    assert.equal(mine.headers.get("x-request-id"), "trace-123");
    const bad = await fetch(`${server.url}/health`, { headers: { "x-request-id": "bad id with spaces" } });
    assert.match(bad.headers.get("x-request-id") ?? "", /^req_[A-Za-z0-9]{20}$/);
    // A key pasted as an id is neither echoed nor logged.
    const key = `alv_live_${"K".repeat(32)}`;
    const pasted = await fetch(`${server.url}/v1/models`, { headers: { "x-request-id": key } });
    assert.match(pasted.headers.get("x-request-id") ?? "", /^req_[A-Za-z0-9]{20}$/);
    assert.ok(!JSON.stringify(server.logs.records()).includes(key), "the key is in no log line");
  });
  it("ignores unknown fields, but names them in the alveare-ignored-fields header and the request's log line", async () => {
    // Before, `max_token` (a typo) was answered with the default 512 tokens and nothing said.
    const chat = await postJson(
      `${server.url}/v1/chat/completions`,
      { model: "alveare-chat", messages: [{ role: "user", content: "x" }], max_tokens: 2, max_token: 2, top_k: 40, "bad name\u0001": 1 },
      { "x-request-id": "ignored-fields-1" },
    );
    assert.equal(chat.status, 200);
    // A name a header cannot carry as it is is counted, not echoed.
    assert.equal(chat.headers.get("alveare-ignored-fields"), "max_token, top_k, 1 more");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(server.logs.requests().find((l) => l.request_id === "ignored-fields-1")?.ignored_fields, "max_token, top_k, 1 more");
    // Fields the route reads, the ones it checks and then ignores included (user, frequency_penalty), are not named.
    const known = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-chat",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 2,
      user: "u1",
      frequency_penalty: 0,
    });
    assert.equal(known.status, 200);
    assert.equal(known.headers.get("alveare-ignored-fields"), null);
    // A stream says it in its head; /v1/infer and /v1/embeddings as well; at most eight names.
    const stream = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], max_tokens: 2, stream: true, streem: true }),
    });
    assert.equal(stream.headers.get("alveare-ignored-fields"), "streem");
    await stream.text();
    const many = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, i]));
    const infer = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "I love it", max_tokens: 2, maxTokens: 2, ...many });
    assert.equal(infer.status, 200);
    assert.equal(infer.headers.get("alveare-ignored-fields"), "maxTokens, f0, f1, f2, f3, f4, f5, f6, 3 more");
    const embed = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: "x", encoding: "float" });
    assert.equal(embed.status, 200);
    assert.equal(embed.headers.get("alveare-ignored-fields"), "encoding");
    // A refused body names nothing: its 400 says what is wrong.
    const refused = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "", maxTokens: 2 });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers.get("alveare-ignored-fields"), null);
  });
  it("reports health with the package version", async () => {
    const r = await fetch(`${server.url}/health`);
    const body = (await r.json()) as Record<string, unknown>;
    const { VERSION: version } = await import("../src/version.js");
    assert.deepEqual(Object.keys(body).sort(), ["status", "uptime_seconds", "version"]);
    assert.equal(body.status, "ok");
    assert.equal(body.version, version);
    assert.equal(typeof body.uptime_seconds, "number");
  });
  it("logs one line per request with id, route, status, latency, specialist and tokens", async () => {
    const r = await postJson(
      `${server.url}/v1/infer`,
      { specialist: "classify", prompt: "I love it", max_tokens: 8 },
      { "x-request-id": "log-check-1" },
    );
    assert.equal(r.status, 200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = server.logs.requests().find((l) => l.request_id === "log-check-1");
    assert.ok(line, "request line logged");
    assert.equal(line.route, "/v1/infer");
    assert.equal(line.status, 200);
    assert.equal(line.specialist, "classify");
    assert.equal(typeof line.latency_ms, "number");
    assert.equal((line.prompt_tokens as number) + (line.completion_tokens as number), r.json.tokens_used);
  });
});

describe("HTTP contract: hostile bodies within the size limit", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({});
  });
  after(async () => {
    await server.close();
  });

  it("answers 400, not 500, for a 100,000-deep array where a number belongs", async () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const r = await postJson(`${server.url}/v1/infer`, `{"specialist":"classify","prompt":"x","max_tokens":${deep}}`);
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.deepEqual(r.json.error, {
      message: "Invalid 'max_tokens': expected an integer, got array.",
      type: "invalid_request_error",
      code: "invalid_parameter",
      param: "max_tokens",
    });
  });
});
