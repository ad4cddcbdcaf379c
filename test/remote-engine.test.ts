import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { cliKey, postJson, startTestServer, tempDir, tinyModel, type TestServer } from "./helpers/fixtures.js";
import { until } from "./helpers/until.js";

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Until the upstream serves: /health answers while the models still load, /ready only once they are loaded. */
async function waitForReady(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`upstream exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("upstream did not become ready");
}

describe("remote engine against a second Alveare process", () => {
  let upstream: ChildProcess;
  let server: TestServer;
  before(async () => {
    const port = await freePort();
    const dataDir = tempDir();
    const env = {
      ...process.env,
      ALVEARE_THREADS: "1",
      ALVEARE_METRICS_PORT: "0",
      ALVEARE_LOG_LEVEL: "warn",
      ALVEARE_CONFIG: "",
      ALVEARE_DATA_DIR: dataDir,
    };
    // The upstream is a full Alveare with its own gate: we call it with a key of ours, from the environment.
    process.env.UPSTREAM_ALVEARE_KEY = cliKey(dataDir, "professional", env).key;
    upstream = spawn(process.execPath, [CLI, "serve", "--port", String(port), "--model", await tinyModel()], {
      env,
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitForReady(`http://127.0.0.1:${port}`, upstream);
    server = await startTestServer({
      specialists: {
        faraway: {
          description: "served by another node",
          system_prompt: "",
          remote: { base_url: `http://127.0.0.1:${port}/v1`, model: "alveare-chat", api_key_env: "UPSTREAM_ALVEARE_KEY" },
        },
        "faraway-classify": {
          description: "labels upstream",
          remote: { base_url: `http://127.0.0.1:${port}/v1`, model: "alveare-classify", api_key_env: "UPSTREAM_ALVEARE_KEY" },
          system_prompt: "",
        },
      },
    });
  });
  after(async () => {
    await server.close();
    upstream.kill("SIGTERM");
  });

  it("answers non-streaming requests with the upstream's output and usage", async () => {
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-faraway",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 6,
    });
    assert.equal(r.status, 200);
    const usage = r.json.usage as { prompt_tokens: number; completion_tokens: number };
    assert.ok(usage.prompt_tokens > 0);
    assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 6);
    const classified = await postJson(`${server.url}/v1/infer`, { specialist: "faraway-classify", prompt: "I love it" });
    assert.ok(["positive", "negative", "neutral"].includes(classified.json.result as string));
  });

  it("streams through, with usage from the upstream", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "x", maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "alveare-faraway",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage;
    let finish;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.ok(text.length > 0);
    assert.ok(finish === "length" || finish === "stop");
    assert.ok(usage && usage.completion_tokens >= 1 && usage.completion_tokens <= 8);
  });
});

describe("remote engine start-up", () => {
  it("warns at start, for each specialist and upstream, when its api_key_env names a variable that is not set", async () => {
    delete process.env.ALVEARE_TEST_UNSET_KEY;
    process.env.ALVEARE_TEST_SET_KEY = "sk-set";
    const server = await startTestServer({
      specialists: {
        keyless: {
          description: "x",
          system_prompt: "",
          remote: { base_url: "http://127.0.0.1:9/v1", model: "m", api_key_env: "ALVEARE_TEST_UNSET_KEY" },
        },
        keyed: {
          description: "x",
          system_prompt: "",
          remote: { base_url: "http://127.0.0.1:9/v1", model: "n", api_key_env: "ALVEARE_TEST_SET_KEY" },
        },
      },
    });
    try {
      const warnings = server.logs.records().filter((r) => r.api_key_env !== undefined);
      assert.deepEqual(
        warnings.map((r) => [r.level, r.specialist, r.msg]),
        [
          [
            40,
            "keyless",
            "ALVEARE_TEST_UNSET_KEY (the api_key_env of specialist keyless) is not set: requests to http://127.0.0.1:9/v1 go without a key",
          ],
        ],
      );
    } finally {
      await server.close();
    }
  });
});

describe("remote engine faults", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  let refusedPort: number;
  let base = "";
  before(async () => {
    base = await fake.start();
    refusedPort = await freePort();
    server = await startTestServer({
      specialists: {
        flaky: {
          description: "fault injection",
          system_prompt: "",
          remote: { base_url: base, model: "m", read_timeout_ms: 300, api_key_env: "FLAKY_KEY" },
        },
        nowhere: {
          description: "nothing listens",
          system_prompt: "",
          remote: { base_url: `http://127.0.0.1:${refusedPort}/v1`, model: "m", connect_timeout_ms: 500 },
        },
      },
    });
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  const call = (model: string, stream = false) =>
    postJson(`${server.url}/v1/chat/completions`, { model: `alveare-${model}`, messages: [{ role: "user", content: "x" }], max_tokens: 5, stream });
  const errorOf = (r: { json: Record<string, unknown> }) => r.json.error as { type: string; code: string; message: string };
  /** A streamed request to the flaky specialist: the whole event stream as text. */
  const streamedText = async (): Promise<string> =>
    (
      await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "alveare-flaky", messages: [{ role: "user", content: "x" }], stream: true }),
      })
    ).text();

  it("passes our parameters upstream and reads a good answer", async () => {
    fake.fault = "ok";
    process.env.FLAKY_KEY = "sk-upstream";
    const r = await call("flaky");
    assert.equal(r.status, 200);
    assert.equal((r.json.choices as Array<{ message: { content: string } }>)[0]!.message.content, "fine");
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.model, "m");
    assert.equal(sent.max_tokens, 5);
  });

  it("passes a seed at either end of OpenAI's 64-bit range upstream as an integer inside it", async () => {
    fake.fault = "ok";
    for (const seed of ["9223372036854775807", "-9223372036854775808"]) {
      const r = await postJson(
        `${server.url}/v1/chat/completions`,
        `{"model":"alveare-flaky","messages":[{"role":"user","content":"x"}],"seed":${seed}}`,
      );
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const sent = BigInt(/"seed":(-?\d+)[,}]/.exec(fake.bodies.at(-1)!)![1]!);
      assert.ok(sent <= 9223372036854775807n && sent >= -9223372036854775808n, String(sent));
      assert.ok(sent > 9223372036854770000n || sent < -9223372036854770000n, "still near the end asked for");
    }
  });

  it("passes a json_schema's name and strict upstream: OpenAI holds an answer to the schema only when strict", async () => {
    fake.fault = "ok";
    const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"], additionalProperties: false };
    const sent = async (json_schema: Record<string, unknown>) => {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-flaky",
        messages: [{ role: "user", content: "x" }],
        response_format: { type: "json_schema", json_schema },
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return fake.requests.at(-1)!.response_format;
    };
    assert.deepEqual(await sent({ name: "invoice", strict: true, schema }), {
      type: "json_schema",
      json_schema: { name: "invoice", strict: true, schema },
    });
    assert.deepEqual(await sent({ schema }), { type: "json_schema", json_schema: { name: "output", schema } });
    assert.deepEqual(await sent({ name: "invoice", description: "The invoice's line count.", schema }), {
      type: "json_schema",
      json_schema: { name: "invoice", description: "The invoice's line count.", schema },
    });
  });

  it("passes a tool's strict upstream, as a json_schema's: OpenAI holds a call's arguments to the schema only when strict", async () => {
    fake.fault = "ok";
    const parameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-flaky",
      messages: [{ role: "user", content: "x" }],
      tools: [
        { type: "function", function: { name: "strict_one", parameters, strict: true } },
        { type: "function", function: { name: "loose_one", parameters, strict: false } },
        { type: "function", function: { name: "unsaid", parameters } },
      ],
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(fake.requests.at(-1)!.tools, [
      { type: "function", function: { name: "strict_one", parameters, strict: true } },
      { type: "function", function: { name: "loose_one", parameters, strict: false } },
      { type: "function", function: { name: "unsaid", parameters } },
    ]);
  });

  it("sends no tools upstream under tool_choice none: llama-server without --jinja and Ollama's models without tool support refuse them", async () => {
    fake.fault = "ok";
    const parameters = { type: "object", properties: { city: { type: "string" } } };
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-flaky",
      messages: [{ role: "user", content: "x" }],
      tools: [{ type: "function", function: { name: "weather", description: "The weather.", parameters } }],
      tool_choice: "none",
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const sent = fake.requests.at(-1)!;
    assert.deepEqual([sent.tools, sent.tool_choice, sent.parallel_tool_calls], [undefined, undefined, undefined]);
  });

  it("turns an upstream 500 into 502 server_error", async () => {
    fake.fault = "500";
    const r = await call("flaky");
    assert.equal(r.status, 502);
    assert.equal(errorOf(r).type, "server_error");
    assert.match(errorOf(r).message, /500/);
  });

  it("names the upstream that failed in the operator's warn line (in a pool, nothing else says which), never to the client", async () => {
    fake.fault = "500";
    const before = server.logs.records().length;
    const r = await call("flaky");
    assert.equal(r.status, 502);
    assert.ok(!JSON.stringify(r.json).includes(base), "the client is not told the upstream's address");
    const line = server.logs
      .records()
      .slice(before)
      .find((l) => l.msg === "The upstream engine answered HTTP 500.");
    assert.ok(line !== undefined, "a warn line for the failure");
    assert.equal(line.level, 40);
    assert.equal(line.upstream, base);
    assert.equal(line.model, "m");
  });

  it("keeps an upstream's own words (which may echo its key) from the client: the operator's log has them, the key taken out", async () => {
    fake.fault = "401-echo";
    const r = await call("flaky");
    assert.equal(r.status, 502);
    assert.equal(errorOf(r).message, "The upstream engine answered HTTP 401.");
    fake.fault = "error-event";
    const streamed = await streamedText();
    assert.match(streamed, /"message":"The upstream engine failed mid-stream\."/);
    for (const answer of [JSON.stringify(r.json), streamed]) {
      assert.ok(!answer.includes("sk-upstream") && !answer.includes("gpu-7") && !answer.includes("xxxx") && !answer.includes("yyyy"), answer);
    }
    const lines = server.logs.lines.filter((l) => l.includes("the upstream answered HTTP 401") || l.includes("the upstream failed mid-stream"));
    assert.equal(lines.length, 2, "a warn line for each, with the upstream's words");
    for (const line of lines) {
      assert.ok(!line.includes("sk-upstream"), line);
      assert.match(line, /Bearer \[the upstream key\]/);
      assert.ok(line.length < 2_000, "the upstream's words are bounded");
    }
  });

  it("takes the key out of an upstream's words before bounding them, so no part of it reaches the log", async () => {
    fake.fault = "401-late";
    const before = server.logs.lines.length;
    assert.equal((await call("flaky")).status, 502);
    const line = server.logs.lines.slice(before).find((l) => l.includes("the upstream answered HTTP 401"));
    assert.ok(line !== undefined);
    assert.ok(!line.includes("sk-u"), line);
  });

  it("tells the operator what an upstream 404 usually means: a base_url without /v1, or a model it lacks", async () => {
    fake.fault = "404";
    const before = server.logs.lines.length;
    const r = await call("flaky");
    assert.equal(r.status, 502);
    assert.equal(errorOf(r).message, "The upstream engine answered HTTP 404.");
    // Before, the warn line said only "the upstream answered HTTP 404: Cannot POST …", not what to change.
    const line = server.logs.lines.slice(before).find((l) => l.includes("the upstream answered HTTP 404"));
    assert.ok(line !== undefined);
    assert.match(line, /Cannot POST \/v1\/chat\/completions; check that base_url is the upstream's API root \(…\/v1 on most servers\)/);
  });

  it("passes an upstream 400's reason to the client, bounded", async () => {
    fake.fault = "400-long";
    const r = await call("flaky");
    assert.equal(r.status, 400);
    assert.match(errorOf(r).message, /the upstream engine refused the request: prompt too long z+…$/);
    assert.ok(errorOf(r).message.length < 400);
  });

  it("answers an upstream's refusal of a prompt over its context as context_length_exceeded, whole and streamed", async () => {
    // As OpenAI (and an Alveare upstream), llama-server, and vLLM (old body at the top level, new under error) say it.
    const tooLong = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.";
    const bodies = [
      { error: { message: tooLong, type: "invalid_request_error", code: "context_length_exceeded", param: "messages" } },
      { error: { code: 400, message: "the request exceeds the available context size, try increasing it", type: "exceed_context_size_error" } },
      { object: "error", message: tooLong, type: "BadRequestError", param: null, code: 400 },
      { error: { message: tooLong, type: "BadRequestError", param: "input_tokens", code: 400 } },
    ];
    fake.fault = "ok";
    try {
      for (const body of bodies) {
        fake.respond = (res) => void res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify(body));
        for (const stream of [false, true]) {
          const r = await call("flaky", stream);
          assert.equal(r.status, 400, JSON.stringify(body));
          assert.equal(errorOf(r).code, "context_length_exceeded", JSON.stringify(body));
          assert.equal((r.json.error as { param: string }).param, "messages");
          assert.match(errorOf(r).message, /the upstream engine refused the request: .*context/);
        }
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("passes a 422 on as a 400 with its reason, as TGI and other FastAPI servers refuse a request; TGI's context refusal is context_length_exceeded", async () => {
    const cases: Array<[unknown, string]> = [
      [{ error: "Input validation error: `temperature` must be strictly positive", error_type: "validation" }, "invalid_parameter"],
      [
        {
          error: "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 5000 `inputs` tokens and 20 `max_new_tokens`",
          error_type: "validation",
        },
        "context_length_exceeded",
      ],
      [{ detail: [{ loc: ["body", "messages"], msg: "field required", type: "value_error.missing" }] }, "invalid_parameter"],
    ];
    fake.fault = "ok";
    try {
      for (const [body, code] of cases) {
        fake.respond = (res) => void res.writeHead(422, { "content-type": "application/json" }).end(JSON.stringify(body));
        for (const stream of [false, true]) {
          const r = await call("flaky", stream);
          assert.equal(r.status, 400, JSON.stringify(body));
          assert.equal(errorOf(r).code, code, JSON.stringify(body));
          assert.match(errorOf(r).message, /the upstream engine refused the request: /);
        }
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("names the field an upstream's refusal names, where the client sent it; 'messages' otherwise", async () => {
    const cases: Array<[unknown, string, string]> = [
      ["response_format.json_schema.schema", "response_format", "invalid_parameter"],
      ["tools[0].function.parameters", "tools", "invalid_parameter"],
      ["max_tokens", "messages", "invalid_parameter"],
      [null, "messages", "invalid_parameter"],
    ];
    fake.fault = "ok";
    try {
      for (const [param, expected, code] of cases) {
        const body = { error: { message: "bad schema", type: "invalid_request_error", code: "invalid_parameter", param } };
        fake.respond = (res) => void res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify(body));
        const r = await call("flaky");
        assert.equal(r.status, 400);
        assert.equal((r.json.error as { param: string }).param, expected, String(param));
        assert.equal(errorOf(r).code, code);
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("answers 502 when the upstream does not know the configured model (an Alveare upstream's 400): the client's request is not at fault", async () => {
    const body = {
      error: { message: "The model 'alveare-nope' does not exist.", type: "invalid_request_error", code: "model_not_found", param: "model" },
    };
    fake.fault = "ok";
    try {
      fake.respond = (res) => void res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify(body));
      for (const stream of [false, true]) {
        const r = await call("flaky", stream);
        assert.equal(r.status, 502);
        assert.equal(errorOf(r).type, "server_error");
        assert.ok(!errorOf(r).message.includes("alveare-nope"), "the upstream's words go to the log only");
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("turns an upstream 503 into 503", async () => {
    fake.fault = "503";
    const r = await call("flaky");
    assert.equal(r.status, 503);
    assert.equal(errorOf(r).type, "server_error");
  });

  it("passes an overloaded upstream's Retry-After on with its 503, whole and streamed, so clients wait as long as it asks", async () => {
    try {
      for (const fault of ["429", "503"] as const) {
        fake.fault = fault;
        for (const [retryAfter, expected] of [
          ["7", "7"],
          ["0", "1"],
          // At most a minute: an upstream cannot park our clients for days.
          ["999999", "60"],
          ["not a number", null],
          [new Date(Date.now() + 600_000).toUTCString(), null],
        ] as const) {
          fake.retryAfter = retryAfter;
          for (const stream of [false, true]) {
            const r = await call("flaky", stream);
            assert.equal(r.status, 503);
            assert.equal(errorOf(r).code, "upstream_error");
            assert.equal(r.headers.get("retry-after"), expected, `${fault} ${retryAfter} ${stream}`);
          }
        }
      }
    } finally {
      fake.retryAfter = undefined;
    }
  });

  it("turns a slow upstream into 504 after the read timeout", async () => {
    fake.fault = "slow";
    const started = performance.now();
    const r = await call("flaky");
    assert.equal(r.status, 504);
    assert.equal(errorOf(r).type, "server_error");
    assert.ok(performance.now() - started < 3000);
  });

  it("sends an error event when the upstream cuts a stream mid-way", async () => {
    fake.fault = "cut-stream";
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "alveare-flaky", messages: [{ role: "user", content: "x" }], stream: true }),
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /partial /);
    const events = text
      .split("\n\n")
      .filter((e) => e.startsWith("data: "))
      .map((e) => e.slice(6));
    const last = JSON.parse(events.at(-1)!) as { error: { type: string; message: string } };
    assert.equal(last.error.type, "server_error");
    assert.match(last.error.message, /before it finished|closed|terminated|socket/i);
    assert.ok(!text.includes("[DONE]"));
  });

  it("answers an upstream's broken JSON with a 502 or an error event that quotes none of it, and logs it", async () => {
    fake.fault = "garbled";
    const before = server.logs.lines.length;
    const whole = await call("flaky");
    assert.equal(whole.status, 502);
    assert.equal(errorOf(whole).message, "The upstream engine's answer was not valid JSON (cut short, or not an OpenAI-compatible answer).");
    const streamed = await streamedText();
    assert.match(streamed, /"message":"The upstream engine's answer was not valid JSON/);
    assert.ok(!streamed.includes("[DONE]"));
    // The first, whole event is relayed; nothing of the broken one is, not even inside the error's words.
    assert.equal(streamed.split("gpu-7").length, 1, streamed);
    assert.ok(!JSON.stringify(whole.json).includes("secret-weights"), JSON.stringify(whole.json));
    const logged = server.logs.lines.slice(before).filter((l) => l.includes("is not valid JSON"));
    assert.ok(logged.length >= 1, "the operator's log has the parser's words");
  });

  it("retries a refused connection once, then answers 503 naming the failure but not the upstream's address, which only the log has", async () => {
    const r = await call("nowhere");
    assert.equal(r.status, 503);
    assert.equal(errorOf(r).type, "server_error");
    assert.equal(errorOf(r).message, "The upstream engine for this specialist could not be reached (connection refused).");
    assert.ok(!JSON.stringify(r.json).includes("127.0.0.1"), "the client is not told where the upstream lives");
    const logged = server.logs.records().find((l) => l.level === 40 && String(l.msg).includes("connection refused"));
    assert.ok(logged !== undefined, "a warn line for the operator");
    assert.match(JSON.stringify(logged), /ECONNREFUSED 127\.0\.0\.1/);
  });
});

describe("remote engine with several upstreams", () => {
  const a = new FakeUpstream();
  const b = new FakeUpstream();
  let server: TestServer;
  let bPort: number;
  let bBase: string;
  before(async () => {
    const baseA = await a.start();
    const baseB = await b.start();
    bPort = Number(new URL(baseB).port);
    bBase = baseB;
    a.delayMs = b.delayMs = 150;
    server = await startTestServer({
      specialists: {
        pooled: {
          description: "two interchangeable upstreams",
          system_prompt: "",
          remote: {
            upstreams: [
              { base_url: baseA, model: "m" },
              { base_url: baseB, model: "m" },
            ],
            health_check_interval_ms: 200,
            connect_timeout_ms: 500,
          },
        },
      },
    });
  });
  after(async () => {
    await server.close();
    await a.stop();
    await b.stop();
  });

  const call = () =>
    postJson(`${server.url}/v1/chat/completions`, { model: "alveare-pooled", messages: [{ role: "user", content: "x" }], max_tokens: 5 });

  it("spreads concurrent requests over the least busy upstreams", async () => {
    // Answers slow enough that all six are under way together, however late the last one arrives on a loaded machine.
    a.delayMs = b.delayMs = 1000;
    const results = await Promise.all(Array.from({ length: 6 }, call)).finally(() => (a.delayMs = b.delayMs = 150));
    assert.deepEqual(
      results.map((r) => r.status),
      Array(6).fill(200),
    );
    assert.equal(a.requests.length, 3);
    assert.equal(b.requests.length, 3);
  });

  it("fails over when an upstream goes down, and takes it back once its health check passes", async () => {
    await b.stop();
    const before = a.requests.length;
    const during = await Promise.all(Array.from({ length: 4 }, call));
    assert.deepEqual(
      during.map((r) => r.status),
      Array(4).fill(200),
      "every request is served by the upstream still up",
    );
    assert.equal(a.requests.length - before, 4);
    await new Promise((resolve) => setTimeout(resolve, 500)); // health checks keep failing meanwhile
    // The operator is told once that the upstream was taken out, with why, and once that it came back.
    const health = () => server.logs.records().filter((r) => r.component === "remote-engine" && r.upstream === bBase);
    const down = health();
    assert.equal(down.length, 1, "one line when it goes down, not one per failed request or check");
    assert.equal(down[0]!.level, 40);
    assert.match(String(down[0]!.msg), /^upstream unhealthy/);
    // Refused, or reset when a health check was in flight as the upstream stopped: either is why, in words.
    assert.match(String(down[0]!.reason), /connection (refused|reset)/);
    await b.start(bPort);
    await until("a health check that finds it back", () => health().length >= 2);
    const bBefore = b.requests.length;
    await Promise.all(Array.from({ length: 4 }, call));
    assert.ok(b.requests.length - bBefore >= 1, "the recovered upstream gets traffic again");
    const back = health().slice(1);
    assert.equal(back.length, 1);
    assert.equal(back[0]!.level, 30);
    assert.match(String(back[0]!.msg), /^upstream healthy again/);
  });
});

describe("remote engine relaying answers other OpenAI-compatible servers give", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    const base = await fake.start();
    server = await startTestServer({
      specialists: { elsewhere: { description: "a vLLM or llama-server", system_prompt: "", remote: { base_url: base, model: "m" } } },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  const WEATHER = {
    type: "function" as const,
    function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
  };
  const ask = { model: "alveare-elsewhere", messages: [{ role: "user" as const, content: "Weather in Rome and Paris?" }], tools: [WEATHER] };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: "up",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  const call = (id: string, city: string) => ({ id, type: "function", function: { name: "get_weather", arguments: JSON.stringify({ city }) } });

  it("keeps the text an upstream writes before its tool calls, whole as streamed", async () => {
    // vLLM's and llama-server's tool parsers return what the model wrote before a call as content beside the calls.
    fake.scripted = {
      whole: {
        choices: [
          { index: 0, message: { role: "assistant", content: "Let me check.", tool_calls: [call("call_a", "Rome")] }, finish_reason: "tool_calls" },
        ],
        usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
      },
      events: [
        chunk({ role: "assistant", content: "Let me check." }),
        chunk({ tool_calls: [{ index: 0, ...call("call_a", "Rome") }] }),
        chunk({}, "tool_calls"),
      ],
    };
    try {
      const whole = (await client.chat.completions.create(ask)).choices[0]!;
      assert.equal(whole.finish_reason, "tool_calls");
      assert.equal(whole.message.content, "Let me check.");
      assert.deepEqual(whole.message.tool_calls, [call("call_a", "Rome")]);
      const streamed = (await client.chat.completions.stream(ask).finalChatCompletion()).choices[0]!;
      assert.equal(streamed.message.content, whole.message.content);
      assert.equal(streamed.message.tool_calls![0]!.function.arguments, '{"city":"Rome"}');
    } finally {
      fake.scripted = undefined;
    }
  });

  it("tells apart streamed calls whose pieces carry no index, as Gemini's OpenAI endpoint sends them", async () => {
    const calls = [call("call_r", "Rome"), call("call_p", "Paris")];
    const together = [chunk({ role: "assistant", tool_calls: calls }), chunk({}, "tool_calls")];
    const apart = [chunk({ role: "assistant", tool_calls: [calls[0]] }), chunk({ tool_calls: [calls[1]] }), chunk({}, "tool_calls")];
    // A call's arguments in pieces after its first, which names it; none carries an index.
    const pieces = [
      chunk({ tool_calls: [{ id: "call_r", type: "function", function: { name: "get_weather", arguments: "" } }] }),
      chunk({ tool_calls: [{ function: { arguments: '{"city":' } }] }),
      chunk({ tool_calls: [{ function: { arguments: '"Rome"}' } }] }),
      chunk({ tool_calls: [{ id: "call_p", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] }),
      chunk({}, "tool_calls"),
    ];
    // Two calls' pieces in turn, each naming its call by id only.
    const named = (id: string, args: string, name?: string) => ({ id, type: "function", function: { ...(name ? { name } : {}), arguments: args } });
    const interleaved = [
      chunk({ tool_calls: [named("call_r", "", "get_weather")] }),
      chunk({ tool_calls: [named("call_p", "", "get_weather")] }),
      chunk({ tool_calls: [named("call_r", '{"city":"Rome"}')] }),
      chunk({ tool_calls: [named("call_p", '{"city":"Paris"}')] }),
      chunk({}, "tool_calls"),
    ];
    try {
      for (const events of [together, apart, pieces, interleaved]) {
        fake.scripted = { whole: {}, events };
        const received: ChatCompletionChunk[] = [];
        for await (const c of await client.chat.completions.create({ ...ask, stream: true })) received.push(c);
        const deltas = received.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
        assert.deepEqual(
          deltas.filter((d) => d.id !== undefined).map((d) => [d.index, d.id]),
          [
            [0, "call_r"],
            [1, "call_p"],
          ],
        );
        const final = (await client.chat.completions.stream(ask).finalChatCompletion()).choices[0]!;
        assert.deepEqual(final.message.tool_calls, calls, JSON.stringify(events));
      }
    } finally {
      fake.scripted = undefined;
    }
  });

  it("passes on an upstream's content_filter finish, whole and streamed, instead of calling a filtered answer complete", async () => {
    // Azure OpenAI (and OpenAI) end an answer their filter cut with finish_reason "content_filter".
    fake.scripted = {
      whole: {
        choices: [{ index: 0, message: { role: "assistant", content: "Once upon" }, finish_reason: "content_filter" }],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      },
      events: [chunk({ role: "assistant", content: "Once upon" }), chunk({}, "content_filter")],
    };
    const plain = { model: "alveare-elsewhere", messages: [{ role: "user" as const, content: "A story" }] };
    try {
      assert.equal((await client.chat.completions.create(plain)).choices[0]!.finish_reason, "content_filter");
      const received: ChatCompletionChunk[] = [];
      for await (const c of await client.chat.completions.create({ ...plain, stream: true })) received.push(c);
      assert.deepEqual(
        received.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter((f) => f !== null),
        ["content_filter"],
      );
      // The native answer keeps the reference's fields and says it was cut.
      const native = await postJson(`${server.url}/v1/infer`, { specialist: "elsewhere", prompt: "A story" });
      assert.deepEqual([native.json.result, native.json.finish_reason], ["Once upon", "content_filter"]);
    } finally {
      fake.scripted = undefined;
    }
  });

  it("streams only the choices an upstream that ignores n (Ollama) gives, as a whole answer does: none is made up", async () => {
    fake.scripted = {
      whole: {
        choices: [{ index: 0, message: { role: "assistant", content: "one" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
      },
      events: [chunk({ role: "assistant", content: "one" }), chunk({}, "stop")],
    };
    const several = { model: "alveare-elsewhere", messages: [{ role: "user" as const, content: "Hi" }], n: 3 };
    try {
      const whole = await client.chat.completions.create(several);
      assert.deepEqual(
        whole.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
        [[0, "one", "stop"]],
      );
      const received: ChatCompletionChunk[] = [];
      for await (const c of await client.chat.completions.create({ ...several, stream: true })) received.push(c);
      assert.deepEqual([...new Set(received.flatMap((c) => c.choices.map((ch) => ch.index)))], [0]);
    } finally {
      fake.scripted = undefined;
    }
  });

  it("keeps only the choices asked for, and meters no more than max_tokens allowed when the upstream reports no usage", async () => {
    const piece = (index: number, delta: Record<string, unknown>, finish: string | null = null) => ({
      ...chunk(delta, finish),
      choices: [{ index, delta, finish_reason: finish }],
    });
    const long = "B".repeat(3000);
    // An n: 1 request answered with a second, long choice and no usage (a misbehaving upstream).
    fake.scripted = {
      whole: {
        choices: [
          { index: 0, message: { role: "assistant", content: "A" }, finish_reason: "stop" },
          { index: 1, message: { role: "assistant", content: long }, finish_reason: "stop" },
        ],
      },
      events: [
        piece(0, { role: "assistant", content: "A" }),
        piece(1, { role: "assistant", content: long }),
        piece(1, {}, "stop"),
        piece(0, {}, "stop"),
      ],
    };
    const ask = { model: "alveare-elsewhere", messages: [{ role: "user" as const, content: "Hi" }], max_tokens: 5 };
    try {
      const whole = await client.chat.completions.create(ask);
      assert.deepEqual(
        whole.choices.map((c) => [c.index, c.message.content]),
        [[0, "A"]],
      );
      assert.equal(whole.usage!.completion_tokens, 1, "the dropped choice is not metered");
      const received: ChatCompletionChunk[] = [];
      for await (const c of await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } })) received.push(c);
      assert.deepEqual([...new Set(received.flatMap((c) => c.choices.map((ch) => ch.index)))], [0], "no piece of a choice not asked for");
      assert.equal(received.at(-1)!.usage!.completion_tokens, 1);
      // One choice longer than max_tokens allowed, without usage: the estimate stops at what the request allowed.
      fake.scripted = {
        whole: { choices: [{ index: 0, message: { role: "assistant", content: long }, finish_reason: "stop" }] },
        events: [piece(0, { role: "assistant", content: long }), piece(0, {}, "stop")],
      };
      assert.equal((await client.chat.completions.create(ask)).usage!.completion_tokens, 5);
      const streamed: ChatCompletionChunk[] = [];
      for await (const c of await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } })) streamed.push(c);
      assert.equal(streamed.at(-1)!.usage!.completion_tokens, 5);
    } finally {
      fake.scripted = undefined;
    }
  });

  it("numbers a whole answer's choices by the upstream's index, as a stream places them, whatever order it lists them in", async () => {
    const piece = (index: number, delta: Record<string, unknown>, finish: string | null = null) => ({
      ...chunk(delta, finish),
      choices: [{ index, delta, finish_reason: finish }],
    });
    fake.scripted = {
      whole: {
        choices: [
          { index: 1, message: { role: "assistant", content: "B" }, finish_reason: "length" },
          { index: 0, message: { role: "assistant", content: "A" }, finish_reason: "stop" },
        ],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      },
      events: [
        piece(1, { role: "assistant", content: "B" }),
        piece(0, { role: "assistant", content: "A" }),
        piece(1, {}, "length"),
        piece(0, {}, "stop"),
      ],
    };
    const several = { model: "alveare-elsewhere", messages: [{ role: "user" as const, content: "Hi" }], n: 2 };
    const expected = [
      [0, "A", "stop"],
      [1, "B", "length"],
    ];
    try {
      const whole = await client.chat.completions.create(several);
      assert.deepEqual(
        whole.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
        expected,
      );
      const streamed = await client.chat.completions.stream(several).finalChatCompletion();
      assert.deepEqual(
        streamed.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
        expected,
      );
      const native = await postJson(`${server.url}/v1/infer`, { specialist: "elsewhere", prompt: "Hi" });
      assert.equal(native.json.result, "A");
    } finally {
      fake.scripted = undefined;
    }
  });

  it("relays an upstream's refusal as message.refusal, whole and streamed, rather than as an empty answer", async () => {
    // OpenAI's structured outputs answer a request they will not serve with a refusal and null content.
    const refusal = "I'm sorry, I cannot help with that.";
    fake.scripted = {
      whole: {
        choices: [{ index: 0, message: { role: "assistant", content: null, refusal }, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 },
      },
      events: [
        chunk({ role: "assistant", content: null, refusal: "" }),
        chunk({ refusal: "I'm sorry, " }),
        chunk({ refusal: "I cannot help with that." }),
        chunk({}, "stop"),
      ],
    };
    const ask = {
      model: "alveare-elsewhere",
      messages: [{ role: "user" as const, content: "Something bad" }],
      response_format: {
        type: "json_schema" as const,
        json_schema: { name: "a", schema: { type: "object", properties: { a: { type: "string" } } } },
      },
    };
    try {
      const whole = (await client.chat.completions.create(ask)).choices[0]!.message;
      assert.equal(whole.refusal, refusal);
      assert.equal(whole.content, null);
      const streamed = (await client.chat.completions.stream(ask).finalChatCompletion()).choices[0]!.message;
      assert.equal(streamed.refusal, refusal);
      assert.equal(streamed.content, null);
      const native = await postJson(`${server.url}/v1/infer`, { specialist: "elsewhere", prompt: "Something bad" });
      assert.deepEqual([native.json.result, native.json.refusal], ["", refusal]);
    } finally {
      fake.scripted = undefined;
    }
  });
});
