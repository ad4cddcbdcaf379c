import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { HeldUpstream } from "./helpers/held-upstream.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { capConnections } from "../src/server/connection-cap.js";

/** Every raw connection a test opened, ended after the suite so that a failing test cannot hang the server's close. */
const opened = new Set<Socket>();
const endAllConnections = (): void => {
  for (const socket of opened) socket.destroy();
  opened.clear();
};

/** A raw connection to the server: what it sent back, once it closed the connection. */
function rawConnection(serverUrl: string, localAddress?: string): { socket: Socket; closed: Promise<string> } {
  const { hostname, port } = new URL(serverUrl);
  const socket = connect({ port: Number(port), host: hostname, ...(localAddress === undefined ? {} : { localAddress }) });
  opened.add(socket);
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
  socket.on("error", () => undefined);
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(received)));
  return { socket, closed };
}

/** Splits a raw HTTP/1.1 response into status, headers (lower-cased) and body. */
function parseRaw(text: string): { status: number; headers: Map<string, string>; body: string } {
  const [head = "", body = ""] = text.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

/** Sends a raw request and parses the answer, once the server closed the connection (or 5 s passed: `closedByServer` false). */
async function rawExchange(serverUrl: string, request: string): Promise<ReturnType<typeof parseRaw> & { closedByServer: boolean }> {
  const { socket, closed } = rawConnection(serverUrl);
  let cut = false;
  const timer = setTimeout(() => {
    cut = true;
    socket.destroy();
  }, 5000);
  socket.write(request);
  const text = await closed;
  clearTimeout(timer);
  return { ...parseRaw(text), closedByServer: !cut };
}

/** Content-Type values Fastify cannot parse: each would be its bare 415 without our guard. */
const UNPARSEABLE_CONTENT_TYPES = ["a b", "", "/"];

const rawPost = (path: string, contentType: string, body: string, extra = ""): string =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`;

function assertCatalogue(body: string, code: string): void {
  const parsed = JSON.parse(body) as { error: Record<string, unknown> };
  assert.deepEqual(Object.keys(parsed.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(parsed.error.code, code);
  assert.equal(parsed.error.type, "invalid_request_error");
}

/** A refusal before any route: the catalogue's body, its request id, nosniff, and the connection closed. */
function assertRefusal(r: Awaited<ReturnType<typeof rawExchange>>, status: number, code: string, id: string | RegExp): void {
  assert.equal(r.status, status, r.body);
  assertCatalogue(r.body, code);
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  if (typeof id === "string") assert.equal(r.headers.get("x-request-id"), id);
  else assert.match(r.headers.get("x-request-id") ?? "", id);
  assert.equal(r.headers.get("connection")?.toLowerCase(), "close");
  assert.ok(r.closedByServer, "the server closes the connection");
}

const OUR_ID = /^req_[A-Za-z0-9]{20}$/;

const REQUEST_TIMEOUT_MS = 400;

describe("HTTP hardening: slow clients, framework errors, headers, logs", () => {
  const upstream = new FakeUpstream();
  let server: TestServer;
  before(async () => {
    const base = await upstream.start();
    server = await startTestServer(
      { specialists: { slow: { description: "slow upstream", system_prompt: "", remote: { base_url: base, model: "m" } } } },
      { env: { ALVEARE_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), ALVEARE_HEADERS_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) } },
    );
  });
  after(async () => {
    endAllConnections();
    await server.close();
    await upstream.stop();
  });

  it("answers a body that never comes with the catalogue's 408 and closes the connection", async () => {
    const { socket, closed } = rawConnection(server.url);
    socket.write("POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\nX-Request-Id: stalled-body\r\n\r\n");
    const r = parseRaw(await closed);
    assert.equal(r.status, 408);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.equal(r.headers.get("x-request-id"), "stalled-body", "the answer carries the id its log line has");
    assertCatalogue(r.body, "request_timeout");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = server.logs.requests().find((l) => l.request_id === "stalled-body");
    assert.equal(line?.status, 408, "the request's log line says it timed out");
    assert.equal(server.logs.records().filter((r) => r.msg === "a shared dependency is unavailable").length, 0, "no dependency is blamed");
  });

  for (const [how, status] of [
    ["closes", 400],
    ["resets", 499],
  ] as const) {
    it(`logs a client that ${how} its connection mid-body as ${status}, and blames no dependency`, async () => {
      const { socket, closed } = rawConnection(server.url);
      const id = `left-mid-body-${how}`;
      socket.write(
        `POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-Request-Id: ${id}\r\n\r\n{"spec`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      // A FIN is a request cut short (400, as nginx logs it); a reset is a client gone (499).
      if (how === "closes") socket.end();
      else socket.resetAndDestroy();
      await closed;
      await new Promise((resolve) => setTimeout(resolve, 100));
      const line = server.logs.requests().find((l) => l.request_id === id);
      assert.equal(line?.status, status, JSON.stringify(line));
      if (how === "closes") assert.equal(line?.code, "invalid_request", "a FIN mid-body is answered (and logged) as a request cut short");
      const records = server.logs.records();
      assert.equal(records.filter((r) => r.msg === "a shared dependency is unavailable").length, 0, "no dependency is blamed");
      assert.equal(records.filter((r) => r.level === 50).length, 0, "no error line");
    });
  }

  it("answers a body trickled a byte at a time with 408", async () => {
    const { socket, closed } = rawConnection(server.url);
    socket.write("POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-Request-Id: trickled\r\n\r\n");
    const trickle = setInterval(() => socket.writable && socket.write(" "), REQUEST_TIMEOUT_MS / 8);
    socket.once("close", () => clearInterval(trickle));
    const r = parseRaw(await closed);
    assert.equal(r.status, 408);
    assertCatalogue(r.body, "request_timeout");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const line = server.logs.requests().find((l) => l.request_id === "trickled");
    assert.deepEqual({ status: line?.status, code: line?.code }, { status: 408, code: "request_timeout" }, "the log line says what the client got");
  });

  it("answers headers that never end with 408", async () => {
    const { socket, closed } = rawConnection(server.url);
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\n");
    const r = parseRaw(await closed);
    assert.equal(r.status, 408);
    assert.match(r.headers.get("x-request-id") ?? "", OUR_ID);
    assertCatalogue(r.body, "request_timeout");
  });

  it("does not cut a generation that takes longer than the request timeout", async () => {
    upstream.fault = "ok";
    upstream.delayMs = REQUEST_TIMEOUT_MS * 4;
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-slow",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 4,
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((r.json.choices as Array<{ message: { content: string } }>)[0]!.message.content, "fine");
    upstream.delayMs = 0;
  });

  it("answers over-large headers with the catalogue's 431", async () => {
    const { socket, closed } = rawConnection(server.url);
    socket.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(32 * 1024)}\r\n\r\n`);
    const r = parseRaw(await closed);
    assert.equal(r.status, 431);
    assertCatalogue(r.body, "request_header_fields_too_large");
  });

  it("answers an unparseable request with the catalogue's 400", async () => {
    const { socket, closed } = rawConnection(server.url);
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
    const r = parseRaw(await closed);
    assert.equal(r.status, 400);
    assertCatalogue(r.body, "invalid_request");
  });

  it("answers a malformed URL with the catalogue's 400", async () => {
    const r = await fetch(`${server.url}/v1/models/%zz`);
    assert.equal(r.status, 400);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assertCatalogue(await r.text(), "invalid_request");
  });

  it("reads a body as JSON whatever its Content-Type, an unparseable one included", async () => {
    upstream.fault = "ok";
    const chat = JSON.stringify({ model: "alveare-slow", messages: [{ role: "user", content: "x" }], max_tokens: 4 });
    for (const type of UNPARSEABLE_CONTENT_TYPES) {
      const ok = await rawExchange(server.url, rawPost("/v1/chat/completions", type, chat));
      assert.equal(ok.status, 200, `${JSON.stringify(type)}: ${ok.body}`);
      assert.equal((JSON.parse(ok.body) as { object: string }).object, "chat.completion");
      // Read as JSON: a body that is not JSON says so, one that is says what it lacks.
      const notJson = await rawExchange(server.url, rawPost("/v1/embeddings", type, "nope"));
      assert.equal(notJson.status, 400, `${JSON.stringify(type)}: ${notJson.body}`);
      assertCatalogue(notJson.body, "invalid_json");
      assert.ok(notJson.headers.get("x-request-id"));
      const empty = await rawExchange(server.url, rawPost("/v1/embeddings", type, "{}"));
      assert.equal(empty.status, 400, `${JSON.stringify(type)}: ${empty.body}`);
      assertCatalogue(empty.body, "missing_parameter");
      const unknown = await rawExchange(server.url, rawPost("/v1/nothing-here", type, "{}"));
      assert.equal(unknown.status, 404, `${JSON.stringify(type)}: ${unknown.body}`);
      assertCatalogue(unknown.body, "not_found");
    }
  });

  it("answers an HTTP/1.1 request without Host in the catalogue's shape, with its request id", async () => {
    const r = await rawExchange(server.url, "GET /health HTTP/1.1\r\nX-Request-Id: no-host\r\n\r\n");
    assertRefusal(r, 400, "invalid_request", "no-host");
    assert.match(r.body, /Host/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const line = server.logs.requests().find((l) => l.request_id === "no-host");
    assert.deepEqual({ status: line?.status, code: line?.code }, { status: 400, code: "invalid_request" });
    // HTTP/1.0 needs no Host.
    const old = await rawExchange(server.url, "GET /health HTTP/1.0\r\n\r\n");
    assert.equal(old.status, 200, old.body);
  });

  it("answers an Expect other than 100-continue in the catalogue's shape, not a bare 417", async () => {
    for (const request of [
      "GET /health HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nX-Request-Id: bad-expect\r\n\r\n",
      rawPost("/v1/infer", "application/json", "{}", "Expect: 200-ok\r\nX-Request-Id: bad-expect\r\n"),
    ]) {
      const r = await rawExchange(server.url, request);
      assertRefusal(r, 400, "invalid_request", "bad-expect");
      assert.match(r.body, /Expect/);
    }
  });

  it("answers CONNECT in the catalogue's shape instead of closing the connection unanswered", async () => {
    const r = await rawExchange(server.url, "CONNECT host:22 HTTP/1.1\r\nHost: host:22\r\nX-Request-Id: tunnel\r\n\r\n");
    assertRefusal(r, 400, "invalid_request", "tunnel");
    assert.match(r.body, /CONNECT/);
    const again = await fetch(`${server.url}/health`);
    assert.equal(again.status, 200, "the server goes on serving");
  });

  it("gives Node's refusals of unreadable requests a request id", async () => {
    for (const [request, status, code] of [
      ["POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}", 400, "invalid_request"],
      ["FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"],
      [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(32 * 1024)}\r\n\r\n`, 431, "request_header_fields_too_large"],
    ] as const) {
      assertRefusal(await rawExchange(server.url, request), status, code, OUR_ID);
    }
  });

  it("sends nosniff on every answer", async () => {
    for (const path of ["/health", "/v1/models", "/v1/nothing-here", "/dashboard/nothing-here"]) {
      const r = await fetch(`${server.url}${path}`);
      assert.equal(r.headers.get("x-content-type-options"), "nosniff", path);
    }
    const invalid = await postJson(`${server.url}/v1/infer`, { specialist: "chat" });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.headers.get("x-content-type-options"), "nosniff");
  });

  it("never logs a query string", async () => {
    const secret = "alv_live_QuerySecretShouldNotBeLogged0000";
    await fetch(`${server.url}/v1/modelz?api_key=${secret}`);
    await fetch(`${server.url}/v1/models?api_key=${secret}`);
    await fetch(`${server.url}/v1/models/%zz?api_key=${secret}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const log = server.logs.lines.join("\n");
    assert.ok(log.includes("/v1/modelz?[redacted]"), "the unknown route is logged, without its query");
    assert.ok(!log.includes(secret), "no query string reaches the log");
  });
});

describe("HTTP hardening: headers timeout and request timeout", () => {
  const HEADERS_MS = 300;
  const REQUEST_MS = 1500;
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { env: { ALVEARE_REQUEST_TIMEOUT_MS: String(REQUEST_MS), ALVEARE_HEADERS_TIMEOUT_MS: String(HEADERS_MS) } });
  });
  after(async () => {
    endAllConnections();
    await server.close();
  });

  const messageOf = (body: string): string => (JSON.parse(body) as { error: { message: string } }).error.message;

  it("names the headers timeout when the headers are what is late", async () => {
    const started = Date.now();
    const r = await rawExchange(server.url, "GET /health HTTP/1.1\r\nHost: x\r\n");
    assert.ok(Date.now() - started < REQUEST_MS, "cut by the headers timeout");
    assertRefusal(r, 408, "request_timeout", OUR_ID);
    assert.match(messageOf(r.body), new RegExp(`headers were not received in full within ${HEADERS_MS} ms`));
  });

  it("names the headers timeout for a kept-alive connection's next request too", async () => {
    const { socket, closed } = rawConnection(server.url);
    await new Promise<void>((resolve) => {
      socket.once("data", () => resolve());
      socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\n");
    const text = await closed;
    // The first answer, then the second request's.
    const r = parseRaw(text.slice(text.lastIndexOf("HTTP/1.1 ")));
    assert.equal(r.status, 408, text);
    assert.match(messageOf(r.body), new RegExp(`headers were not received in full within ${HEADERS_MS} ms`));
  });

  it("names the request timeout when the body is what is late", async () => {
    const r = await rawExchange(server.url, "POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-Request-Id: late-body\r\n\r\n{");
    assertRefusal(r, 408, "request_timeout", "late-body");
    assert.match(messageOf(r.body), new RegExp(`The request was not received in full within ${REQUEST_MS} ms`));
  });
});

describe("HTTP hardening: CORS", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { gated: true });
  });
  after(async () => {
    endAllConnections();
    await server.close();
  });

  it("answers a /v1 preflight without a key, for any origin and no credentials", async () => {
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os, OpenAI-Organization, openai-project, x-evil",
      },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.equal(r.headers.get("access-control-allow-credentials"), null);
    assert.match(r.headers.get("access-control-allow-methods") ?? "", /POST/);
    const allowed = (r.headers.get("access-control-allow-headers") ?? "").split(", ");
    // OpenAI-Organization and OpenAI-Project: what an openai SDK made with `organization` or `project` sends.
    for (const h of ["authorization", "content-type", "x-request-id", "x-stainless-os", "openai-organization", "openai-project"]) {
      assert.ok(allowed.includes(h), h);
    }
    assert.ok(!allowed.includes("x-evil"));
  });

  it("lets a browser read /v1 answers, errors included", async () => {
    const r = await fetch(`${server.url}/v1/models`, { headers: { origin: "https://app.example" } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    const exposed = (r.headers.get("access-control-expose-headers") ?? "").split(", ");
    // Every x-ratelimit-* header the gate can send, the token ones (plans that cap tokens) included.
    for (const name of ["x-request-id", "retry-after", "retry-after-ms", "x-should-retry", "alveare-ignored-fields"])
      assert.ok(exposed.includes(name), name);
    for (const kind of ["requests", "tokens"]) {
      for (const what of ["limit", "remaining", "reset"]) assert.ok(exposed.includes(`x-ratelimit-${what}-${kind}`), `x-ratelimit-${what}-${kind}`);
    }
  });

  it("refuses a dashboard state change with an unparseable Content-Type as not JSON, never 415", async () => {
    for (const type of UNPARSEABLE_CONTENT_TYPES) {
      const r = await rawExchange(server.url, rawPost("/dashboard/api/login", type, JSON.stringify({ email: "a@b.example", password: "x" })));
      assert.equal(r.status, 403, `${JSON.stringify(type)}: ${r.body}`);
      const body = JSON.parse(r.body) as { error: Record<string, unknown> };
      assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
      assert.equal(body.error.code, "csrf_failed");
      assert.ok(r.headers.get("x-request-id"));
    }
  });

  it("never answers cross-origin for the dashboard or the admin API", async () => {
    for (const path of ["/dashboard/api/me", "/admin/api/accounts"]) {
      const preflight = await fetch(`${server.url}${path}`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST" },
      });
      assert.notEqual(preflight.status, 204, path);
      assert.equal(preflight.headers.get("access-control-allow-origin"), null, path);
      const get = await fetch(`${server.url}${path}`, { headers: { origin: "https://app.example" } });
      assert.equal(get.headers.get("access-control-allow-origin"), null, path);
    }
  });
});

/** The connections a server holds open now. */
const openConnections = (server: TestServer): Promise<number> =>
  new Promise<number>((resolve) => server.app.server.getConnections((_e, n) => resolve(n)));

/** A server whose remote specialist `faraway` answers only when the test releases its upstream, started with `env`. */
function serverWithHeldUpstream(env: Record<string, string>): { upstream: HeldUpstream; server: TestServer } {
  const held = { upstream: new HeldUpstream() } as { upstream: HeldUpstream; server: TestServer };
  before(async () => {
    const remote = { description: "held open by the test", system_prompt: "", remote: { base_url: await held.upstream.start(), model: "m" } };
    held.server = await startTestServer({ specialists: { faraway: remote } }, { env });
  });
  after(async () => {
    endAllConnections();
    await held.upstream.stop();
    await held.server.close();
  });
  return held;
}

describe("HTTP hardening: connection cap", () => {
  const held = serverWithHeldUpstream({ ALVEARE_MAX_CONNECTIONS: "2" });

  /** A kept-alive connection that has had one answer: the server has surely accepted it. */
  async function heldConnection(): Promise<Socket> {
    const { socket } = rawConnection(held.server.url);
    await new Promise<void>((resolve, reject) => {
      socket.once("data", () => resolve());
      socket.once("close", () => reject(new Error("the connection was closed without an answer")));
      socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    return socket;
  }

  /** A connection the server has accepted (it is counted) that has sent `sent` and nothing more. */
  async function silentConnection(sent = "", localAddress?: string): Promise<{ socket: Socket; closed: Promise<string> }> {
    const before = await connections();
    const connection = rawConnection(held.server.url, localAddress);
    if (sent !== "") connection.socket.write(sent);
    while ((await connections()) === before) await new Promise((resolve) => setTimeout(resolve, 10));
    return connection;
  }

  const connections = (): Promise<number> => openConnections(held.server);

  async function noConnections(): Promise<void> {
    held.server.app.server.closeIdleConnections();
    while ((await connections()) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

  it("closes a connection past ALVEARE_MAX_CONNECTIONS when every connection is being answered", async () => {
    await noConnections();
    // Two requests the server is answering (their upstream holds the answer): neither can make way.
    const chat = JSON.stringify({ model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] });
    const busy = [rawConnection(held.server.url), rawConnection(held.server.url)];
    for (const { socket } of busy) {
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n${chat}`,
      );
    }
    while (held.upstream.headers.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const refused = rawConnection(held.server.url);
    refused.socket.write(health);
    assert.equal(await refused.closed, "", "the third connection is closed without an answer");
    held.upstream.release();
    for (const { socket } of busy) socket.destroy();
    // Once the busy ones are gone, new connections are served again.
    await noConnections();
    const r = await fetch(`${held.server.url}/health`);
    assert.equal(r.status, 200);
  });

  it("makes idle connections give way at the cap, so kept-alive sockets cannot shut new clients out", async () => {
    await noConnections();
    // Two sockets kept alive after one answer: both idle, holding every place.
    const idle = [await heldConnection(), await heldConnection()];
    const idleClosed = idle.map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    // The newcomer is served at once, in the place of the one idle longest (well before the 72 s keep-alive timeout).
    const newcomer = rawConnection(held.server.url);
    newcomer.socket.write(health);
    assert.match(await newcomer.closed, /^HTTP\/1\.1 200 /);
    await idleClosed[0];
    assert.equal(idle[1]!.destroyed, false, "only one place was needed");
  });

  it("makes connections that send nothing, or only part of their headers, give way: they cannot hold every place", async () => {
    await noConnections();
    // One client holding both places: one connection silent, one trickling its headers (each would keep its
    // place until the 10 s headers timeout, and be reopened).
    const silent = await silentConnection();
    const trickling = await silentConnection("GET /health HTTP/1.1\r\nHost: x\r\n");
    // Each newcomer is served (and stays, kept alive) in the place of the oldest of them.
    await heldConnection();
    assert.equal(await silent.closed, "", "the silent one made way, unanswered");
    await heldConnection();
    assert.equal(await trickling.closed, "", "then the trickling one");
  });

  it("makes the connections of the address holding the most give way first, not another client's older one", async () => {
    await noConnections();
    // Another client (another loopback address) is sending its request, slowly: the oldest connection.
    const other = await silentConnection("GET /health HTTP/1.1\r\nHost: x\r\n", "127.0.0.2");
    // A client holding the other place with a silent connection opens one more: its own silent one makes way.
    const silent = await silentConnection();
    await heldConnection();
    assert.equal(await silent.closed, "", "the busier address's connection made way");
    // The other client's request was never cut: it finishes and is answered.
    other.socket.write("Connection: close\r\n\r\n");
    assert.match(await other.closed, /^HTTP\/1\.1 200 /);
  });
});

describe("HTTP hardening: the connection cap's clients", () => {
  it("counts an IPv6 client by its /64, as the sign-in limits do: its many addresses give way before another client's connection", () => {
    // Loopback has no second IPv6 address to connect from, so the connections are stand-ins on a real server's event:
    // an address and a destroy(), all the cap reads of a socket that has not sent a request.
    const server = createServer();
    capConnections(server, 2);
    const connection = (remoteAddress: string) => {
      const socket = Object.assign(new EventEmitter(), { remoteAddress, destroyed: false, _httpMessage: null, destroy: () => undefined });
      socket.destroy = () => {
        socket.destroyed = true;
        socket.emit("close");
      };
      server.emit("connection", socket);
      return socket;
    };
    const other = connection("2001:db8:1::1");
    const first = connection("2001:db8:2::1");
    const second = connection("2001:db8:2::2");
    assert.equal(other.destroyed, false, "the other client's older connection stays");
    assert.equal(first.destroyed, true, "the /64 holding two connections gives way, its oldest first");
    assert.equal(second.destroyed, false);
  });
});

describe("HTTP hardening: connection cap and pipelined requests", () => {
  const held = serverWithHeldUpstream({ ALVEARE_MAX_CONNECTIONS: "2" });

  it("does not make a request being answered give way because the next one pipelined behind it is still arriving", async () => {
    const chat = JSON.stringify({ model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] });
    const post = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n`;
    // Both places hold a request being answered (the upstream holds it); on the first, the client has already
    // sent the headers of its next request, whose body is still to come. Node reads that one while the first
    // is answered, so the parser's request is the pipelined one, not the one the connection's answer is for.
    const pipelined = rawConnection(held.server.url);
    pipelined.socket.write(`${post}${chat}${post}{`);
    const busy = rawConnection(held.server.url);
    busy.socket.write(`${post}${chat}`);
    while (held.upstream.headers.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const refused = rawConnection(held.server.url);
    refused.socket.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.equal(await refused.closed, "", "the newcomer is closed: every connection is being answered");
    assert.equal(pipelined.socket.destroyed, false, "the request being answered kept its connection");
    held.upstream.release();
    assert.match(await new Promise<string>((resolve) => pipelined.socket.once("data", (d: Buffer) => resolve(d.toString()))), /^HTTP\/1\.1 200 /);
  });
});

describe("HTTP hardening: clients that read nothing", () => {
  const held = serverWithHeldUpstream({ ALVEARE_STREAM_STALL_MS: "500" });

  it("cuts a client that reads nothing of its answers for ALVEARE_STREAM_STALL_MS, as a stream's", async () => {
    // Big public answers, pipelined and never read: the connection was being answered for ever, so it never gave
    // way under the connection cap, and a few hundred such held every place.
    const { socket } = rawConnection(held.server.url);
    socket.pause(); // so it sees no end either: the server's count of connections tells
    socket.write("GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(24));
    const connections = (): Promise<number> => openConnections(held.server);
    while ((await connections()) === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const deadline = Date.now() + 8000;
    while ((await connections()) > 0) {
      assert.ok(Date.now() < deadline, "the server closed the connection of a client that read nothing");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    socket.destroy();
  });

  it("still closes a kept-alive connection idle past the keep-alive timeout", async () => {
    const server = held.server.app.server;
    const keepAlive = server.keepAliveTimeout;
    server.keepAliveTimeout = 300; // Node adds a second's margin to it
    try {
      const { socket, closed } = rawConnection(held.server.url);
      socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
      const ended = await Promise.race([closed, new Promise((resolve) => setTimeout(() => resolve(undefined), 5000))]);
      assert.match(String(ended), /^HTTP\/1\.1 200 /, "answered, then closed once idle past the keep-alive timeout");
    } finally {
      server.keepAliveTimeout = keepAlive;
    }
  });

  it("leaves alone a connection slow to send its request: that is the headers timeout's to end", async () => {
    const { socket, closed } = rawConnection(held.server.url);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(socket.destroyed, false);
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.match(await closed, /^HTTP\/1\.1 200 /);
  });

  it("leaves alone an answer that takes longer than that to work out, and a connection kept alive idle", async () => {
    const chat = JSON.stringify({ model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] });
    const { socket, closed } = rawConnection(held.server.url);
    let received = "";
    socket.on("data", (d: Buffer) => (received += d.toString()));
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n${chat}`);
    while (held.upstream.headers.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
    // Three stall periods with nothing to write: the answer is still being worked out.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(socket.destroyed, false);
    held.upstream.release();
    while (!/\r\n\r\n\{.*\}$/s.test(received)) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.match(received, /^HTTP\/1\.1 200 /);
    // Kept alive, idle for three stall periods: still open, and serves the next request.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(socket.destroyed, false);
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.match(await closed, /HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 200 /);
  });
});

describe("HTTP hardening: Expect: 100-continue", () => {
  let server: TestServer;
  let auth: string;
  before(async () => {
    server = await startTestServer({ body_limit: 4096 }, { gated: true });
    auth = (await createKey(server, "scale")).auth.authorization!;
  });
  after(async () => {
    endAllConnections();
    await server.close();
  });

  /** Sends only the head of a POST announcing `length` bytes; resolves with the socket and the first answer's status line. */
  async function announce(
    path: string,
    length: number,
    authorization?: string,
    extra = "",
  ): Promise<{ socket: Socket; first: string; rest: Promise<string> }> {
    const { socket, closed } = rawConnection(server.url);
    const first = new Promise<string>((resolve) => socket.once("data", (chunk: Buffer) => resolve(chunk.toString("utf8").split("\r\n")[0]!)));
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n` +
        `${authorization === undefined ? "" : `Authorization: ${authorization}\r\n`}${extra}Expect: 100-continue\r\nConnection: close\r\n\r\n`,
    );
    return { socket, first: await first, rest: closed };
  }

  it("asks for the body only once it will be read: a body over the limit and a missing key are answered unuploaded", async () => {
    const body = JSON.stringify({ specialist: "classify", prompt: "I love it", max_tokens: 2 });
    const wanted = await announce("/v1/infer", Buffer.byteLength(body), auth);
    assert.equal(wanted.first, "HTTP/1.1 100 Continue");
    wanted.socket.write(body);
    assert.match(await wanted.rest, /HTTP\/1\.1 200 OK/);

    for (const [path, authorization, length, status] of [
      ["/v1/infer", auth, 2_000_000, "413"],
      ["/v1/infer", undefined, 2_000, "401"],
    ] as const) {
      const refused = await announce(path, length, authorization);
      assert.match(refused.first, new RegExp(`^HTTP/1\\.1 ${status} `), `${path} ${authorization === undefined ? "without a key" : ""}`);
      refused.socket.destroy();
    }
    const unsupported = await announce("/v1/infer", 2_000, auth, "Content-Encoding: zstd\r\n");
    assert.match(unsupported.first, /^HTTP\/1\.1 400 /, "a coding it cannot read is refused before the upload");
    unsupported.socket.destroy();
  });
});
