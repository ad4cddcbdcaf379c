import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import Fastify from "fastify";
import { decodedBody, decodingBodies, MAX_DECODING_BODIES, MAX_DECODING_DASHBOARD_BODIES } from "../src/server/body-encoding.js";
import { createKey, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { DASHBOARD_BODY_LIMIT } from "../src/dashboard/dashboard-routes.js";

interface Answer {
  status: number;
  json: { error?: { type: string; code: string; message: string }; choices?: unknown[] };
}

/** One request over `agent` (a single keep-alive socket), the body sent as given with the headers given. */
function post(server: TestServer, agent: Agent, path: string, body: Buffer, headers: Record<string, string>, method = "POST"): Promise<Answer> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path,
        method,
        agent,
        headers: { "content-type": "application/json", "content-length": body.length, ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode!, json: (text === "" ? {} : JSON.parse(text)) as Answer["json"] });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Waits for `condition`, failing (not hanging) after 5 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The statuses a raw connection receives for `first` (head and body as given), then a GET /health sent right after it. */
function thenHealth(server: TestServer, head: string, body: Buffer): Promise<number[]> {
  const { hostname, port } = new URL(server.url);
  const socket = connect({ host: hostname, port: Number(port) });
  let received = "";
  return new Promise((resolve) => {
    const statuses = (): number[] => [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(statuses());
    };
    // A connection held up by an unread body answers the second request only at the request timeout (seconds).
    const timer = setTimeout(finish, 3000);
    socket.on("error", () => undefined);
    socket.on("close", finish);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (statuses().length === 2 && /\}\s*$/.test(received)) finish();
    });
    socket.write(head);
    socket.write(body);
    socket.write(`GET /health HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`);
  });
}

const chat = (content: string): Buffer =>
  Buffer.from(JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content }], max_tokens: 2 }));

describe("compressed request bodies (Content-Encoding)", () => {
  let server: TestServer;
  let auth: Record<string, string>;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  before(async () => {
    server = await startTestServer({}, { gated: true });
    ({ auth } = await createKey(server, "professional"));
  });
  after(async () => {
    agent.destroy();
    await server.close();
  });

  it("are decoded before they are read: gzip, x-gzip, deflate and br, any letter case", async () => {
    const encodings: Array<[string, (b: Buffer) => Buffer]> = [
      ["gzip", gzipSync],
      ["X-GZIP", gzipSync],
      ["deflate", deflateSync],
      ["br", brotliCompressSync],
      ["identity", (b) => b],
    ];
    for (const [coding, encode] of encodings) {
      const answer = await post(server, agent, "/v1/chat/completions", encode(chat(`sent as ${coding}`)), { ...auth, "content-encoding": coding });
      assert.equal(answer.status, 200, `${coding}: ${JSON.stringify(answer.json)}`);
      assert.equal(answer.json.choices?.length, 1, coding);
    }
    const infer = Buffer.from(JSON.stringify({ specialist: "classify", prompt: "compressed too", max_tokens: 2 }));
    assert.equal((await post(server, agent, "/v1/infer", gzipSync(infer), { ...auth, "content-encoding": "gzip" })).status, 200);
  });

  it("are still gated: no key and a bad key are refused as for any body", async () => {
    const body = gzipSync(chat("who am I?"));
    const gzip = { "content-encoding": "gzip" };
    assert.equal((await post(server, agent, "/v1/chat/completions", body, gzip)).json.error?.code, "missing_api_key");
    const bad = { ...gzip, authorization: "Bearer alv_live_000000000000000000000000000000000000" };
    assert.equal((await post(server, agent, "/v1/chat/completions", body, bad)).json.error?.code, "invalid_api_key");
  });

  it("refuse a coding the server does not decode with a 400 naming it", async () => {
    const answer = await post(server, agent, "/v1/chat/completions", chat("zstd?"), { ...auth, "content-encoding": "zstd" });
    assert.equal(answer.status, 400);
    assert.equal(answer.json.error?.type, "invalid_request_error");
    assert.equal(answer.json.error?.code, "invalid_request");
    assert.match(answer.json.error!.message, /Content-Encoding 'zstd' is not supported/);
    const twice = await post(server, agent, "/v1/chat/completions", gzipSync(gzipSync(chat("twice"))), { ...auth, "content-encoding": "gzip, gzip" });
    assert.equal(twice.status, 400, "a list of codings is refused, not half-decoded");
  });

  it("refuse a body that is not what its header says with a 400, and the node serves on", async () => {
    const answer = await post(server, agent, "/v1/chat/completions", chat("plain, but labelled gzip"), { ...auth, "content-encoding": "gzip" });
    assert.equal(answer.status, 400);
    assert.equal(answer.json.error?.code, "invalid_request");
    assert.match(answer.json.error!.message, /not valid gzip/);
    const truncated = gzipSync(chat("cut short")).subarray(0, 20);
    assert.equal((await post(server, agent, "/v1/chat/completions", truncated, { ...auth, "content-encoding": "gzip" })).status, 400);
    const next = await post(server, agent, "/v1/chat/completions", gzipSync(chat("still there?")), { ...auth, "content-encoding": "gzip" });
    assert.equal(next.status, 200, JSON.stringify(next.json));
  });

  it("refuse data after the end of the compressed stream, however the packets fall", async () => {
    const { hostname, port } = new URL(server.url);
    for (const [coding, encode] of [
      ["deflate", deflateSync],
      ["br", brotliCompressSync],
    ] as const) {
      const stream = encode(chat("and then some"));
      const junk = Buffer.alloc(20, "A");
      const whole = await post(server, agent, "/v1/chat/completions", Buffer.concat([stream, junk]), { ...auth, "content-encoding": coding });
      assert.equal(whole.status, 400, `${coding}, one packet`);
      assert.match(whole.json.error!.message, /data after the end of its/);
      // The same body in two packets, the junk after the stream has been decoded.
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on("error", () => undefined);
      let received = "";
      socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: ${auth.authorization}\r\ncontent-type: application/json\r\n` +
          `content-encoding: ${coding}\r\ncontent-length: ${stream.length + junk.length}\r\n\r\n`,
      );
      socket.write(stream);
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.write(junk);
      await until(() => received.includes("}"), "an answer");
      socket.destroy();
      assert.match(received, /^HTTP\/1\.1 400 [^]*data after the end of its/, `${coding}, two packets`);
    }
  });

  it("hold the body limit on the decoded body: a small upload that inflates past it is a 413, and the node serves on", async () => {
    // 64 MiB of JSON in ~65 KB of gzip: decoded whole, it would be held in memory 64 times over the 1 MiB limit.
    const bomb = gzipSync(
      Buffer.from(JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: " ".repeat(64 * 1024 * 1024) }] })),
    );
    assert.ok(bomb.length < 1024 * 1024, "the compressed body is within the limit");
    const rssBefore = process.memoryUsage().rss;
    const answer = await post(server, agent, "/v1/chat/completions", bomb, { ...auth, "content-encoding": "gzip" });
    assert.equal(answer.status, 413);
    assert.equal(answer.json.error?.code, "request_too_large");
    assert.ok(process.memoryUsage().rss - rssBefore < 48 * 1024 * 1024, "the decoded body was not kept");
    const next = await post(server, agent, "/v1/chat/completions", gzipSync(chat("after the bomb")), { ...auth, "content-encoding": "gzip" });
    assert.equal(next.status, 200, JSON.stringify(next.json));
  });

  it("leave a request without a body as it is, and a GET's body does not hold up the connection", async () => {
    const empty = await post(server, agent, "/v1/chat/completions", Buffer.alloc(0), { ...auth, "content-encoding": "zstd" });
    assert.equal(empty.json.error?.code, "invalid_json", "an empty body is an empty body, whatever its coding");
    // A GET's body is never read: it must be dropped as a plain one is, not left half-decoded in the socket.
    const random = gzipSync(randomBytes(400_000));
    const listed = await post(server, agent, "/v1/models", random, { ...auth, "content-encoding": "gzip" }, "GET");
    assert.equal(listed.status, 200);
    const next = await post(server, agent, "/v1/models", Buffer.alloc(0), auth, "GET");
    assert.equal(next.status, 200, "the next request on the connection is answered");
  });

  it(`decode at most ${MAX_DECODING_BODIES} bodies at once: past that a 503 overloaded, and slow uploads that leave free their place`, async () => {
    const { hostname, port } = new URL(server.url);
    const head = gzipSync(chat("x".repeat(1000))).subarray(0, 40);
    // Uploads that send their first bytes and then stall, as a slow client does.
    const stalled: Socket[] = [];
    for (let i = 0; i < MAX_DECODING_BODIES; i++) {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on("error", () => undefined);
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\nauthorization: ${auth.authorization}\r\n` +
          `content-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 100000\r\n\r\n`,
      );
      socket.write(head);
      stalled.push(socket);
    }
    await until(() => decodingBodies() === MAX_DECODING_BODIES, "every stalled upload is being decoded");
    const refused = await post(server, agent, "/v1/chat/completions", gzipSync(chat("one more")), { ...auth, "content-encoding": "gzip" });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error?.code, "overloaded");
    const plain = await post(server, agent, "/v1/chat/completions", chat("uncompressed still served"), auth);
    assert.equal(plain.status, 200, "only compressed bodies wait");
    const unknown = await post(server, agent, "/v1/nothing-here", gzipSync(chat("lost")), { ...auth, "content-encoding": "gzip" });
    assert.equal(unknown.status, 404, "an unknown route's body is not decoded: it is a 404, not a wait");
    for (const socket of stalled) socket.destroy();
    await until(() => decodingBodies() === 0, "the uploads that left freed their places");
    const after = await post(server, agent, "/v1/chat/completions", gzipSync(chat("after")), { ...auth, "content-encoding": "gzip" });
    assert.equal(after.status, 200, JSON.stringify(after.json));
  });

  it("never decodes or parses a preflight's body (anyone may send one): no parsing work, none of the API's decoding places", async () => {
    const preflight = (body: Buffer, headers: Record<string, string> = {}) =>
      post(
        server,
        agent,
        "/v1/chat/completions",
        body,
        { origin: "https://app.example", "access-control-request-method": "POST", ...headers },
        "OPTIONS",
      );
    // A body that would be a 400 anywhere it is read (not JSON, not gzip) is only dropped.
    assert.equal((await preflight(Buffer.from("not json"))).status, 204);
    assert.equal((await preflight(Buffer.from("not gzip at all"), { "content-encoding": "gzip" })).status, 204);
    const nested = gzipSync(
      `{"a":[${Array<string>(3900)
        .fill(`${"[".repeat(128)}${"]".repeat(128)}`)
        .join(",")}]}`,
    );
    assert.equal((await preflight(nested, { "content-encoding": "gzip" })).status, 413, "past the preflight's own 1 KiB");
    // Stalled compressed preflights, as many as the API has places: they hold none.
    const { hostname, port } = new URL(server.url);
    const stalled: Socket[] = [];
    for (let i = 0; i < MAX_DECODING_BODIES; i++) {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on("error", () => undefined);
      socket.write(
        `OPTIONS /v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\norigin: https://app.example\r\n` +
          `content-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 500\r\n\r\n`,
      );
      socket.write(nested.subarray(0, 10));
      stalled.push(socket);
    }
    // Each has been read up to its stall (a decoder, had it one, would be open by now).
    await new Promise((r) => setTimeout(r, 300));
    try {
      const served = await post(server, agent, "/v1/chat/completions", gzipSync(chat("a key's request")), { ...auth, "content-encoding": "gzip" });
      assert.equal(served.status, 200, JSON.stringify(served.json));
      assert.equal(decodingBodies(), 0);
    } finally {
      for (const socket of stalled) socket.destroy();
    }
  });

  it(`hold the dashboard's bodies, read before any sign-in, to ${DASHBOARD_BODY_LIMIT} bytes, decoded or not: a 413 naming that limit`, async () => {
    const nested = `[${Array<string>(3900)
      .fill(`${"[".repeat(127)}${"]".repeat(127)}`)
      .join(",")}]`;
    const bodies = [
      { encoding: "gzip", body: gzipSync(`{"email":${nested},"password":"x"}`) },
      { encoding: undefined, body: Buffer.from(JSON.stringify({ email: "a@example.com", password: "x".repeat(DASHBOARD_BODY_LIMIT) })) },
    ];
    assert.ok(bodies[0]!.body.length < 4096, "a megabyte of nested arrays in a few KB of gzip");
    for (const { encoding, body } of bodies) {
      const answer = await post(server, agent, "/dashboard/api/login", body, {
        origin: server.url,
        ...(encoding === undefined ? {} : { "content-encoding": encoding }),
      });
      assert.equal(answer.status, 413, JSON.stringify(answer.json));
      assert.equal(answer.json.error?.message, `Request body is larger than the limit of ${DASHBOARD_BODY_LIMIT} bytes.`);
    }
    // The longest fields a sign-in may hold, every character escaped, still fit.
    const escaped = Buffer.from(JSON.stringify({ email: "a@example.com", password: "\u0001".repeat(1024) }));
    assert.ok(escaped.length > 6 * 1024);
    const longest = await post(server, agent, "/dashboard/api/login", escaped, { origin: server.url });
    assert.equal(longest.status, 401, JSON.stringify(longest.json));
  });

  it(`give the dashboard, which reads bodies before any sign-in, its own ${MAX_DECODING_DASHBOARD_BODIES} places: clients without a key cannot take the API's`, async () => {
    const { hostname, port } = new URL(server.url);
    const signIn = gzipSync(JSON.stringify({ email: "a@example.com", password: "x".repeat(5000) })).subarray(0, 40);
    // Stalled sign-ins from a stranger: no key, no session, as many as the API has places.
    const stalled: Array<{ socket: Socket; answer: () => string }> = [];
    for (let i = 0; i < MAX_DECODING_BODIES; i++) {
      const socket = connect({ host: hostname, port: Number(port) });
      let answer = "";
      socket.on("data", (chunk: Buffer) => (answer += chunk.toString("utf8")));
      socket.on("error", () => undefined);
      socket.write(
        `POST /dashboard/api/login HTTP/1.1\r\nhost: ${hostname}\r\norigin: ${server.url}\r\n` +
          `content-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 10000\r\n\r\n`,
      );
      socket.write(signIn);
      stalled.push({ socket, answer: () => answer });
    }
    const overloaded = (): number => stalled.filter((s) => /^HTTP\/1\.1 503 [^]*"code":"overloaded"/.test(s.answer())).length;
    try {
      await until(
        () => decodingBodies() === MAX_DECODING_DASHBOARD_BODIES && overloaded() === MAX_DECODING_BODIES - MAX_DECODING_DASHBOARD_BODIES,
        "the dashboard's places are taken, and the sign-ins past them refused",
      );
      const api = await post(server, agent, "/v1/chat/completions", gzipSync(chat("served")), { ...auth, "content-encoding": "gzip" });
      assert.equal(api.status, 200, JSON.stringify(api.json));
    } finally {
      for (const { socket } of stalled) socket.destroy();
    }
    await until(() => decodingBodies() === 0, "the sign-ins that left freed their places");
  });

  it("let go of a compressed body the server answers without reading (unknown method, TRACE, over the limit) or refuses once read (an unreadable content type)", async () => {
    const gzip = gzipSync(randomBytes(400_000));
    const head = (method: string, extra = "", length = gzip.length) =>
      `${method} /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: ${auth.authorization}\r\n` +
      `content-encoding: gzip\r\ncontent-length: ${length}\r\n${extra}\r\n`;
    const cases: Array<[string, string, number]> = [
      ["an unknown method", head("PROPFIND", "content-type: application/json\r\n"), 404],
      ["TRACE", head("TRACE"), 404],
    ];
    for (const [what, request, status] of cases) {
      assert.deepEqual(await thenHealth(server, request, gzip), [status, 200], `${what}: answered, and the connection goes on`);
    }
    // An unreadable content type is decoded and read as JSON like any other (not refused unread, Fastify's 415): the
    // random bytes are no JSON, and Fastify closes the connection after a body it could not parse.
    assert.deepEqual(
      await thenHealth(server, head("POST", "content-type: a b c\r\n"), gzip),
      [400],
      "an unreadable content type: read, then refused",
    );
    // Announced over the limit: refused before any byte is read, and the upload drained as an uncompressed one is.
    const big = Buffer.concat([gzip, gzip, gzip]);
    assert.deepEqual(await thenHealth(server, head("POST", "", big.length), big), [413, 200], "over the limit: 413, then served");
    await until(() => decodingBodies() === 0, "no decoder left behind");
  });

  after(() => assert.equal(decodingBodies(), 0, "every decoded body was let go, whichever way it ended"));
});

describe("a compressed body whose client left before it was decoded", () => {
  it("takes no decode slot: a client gone while an earlier hook awaited leaves nothing to end a decoder", async () => {
    const app = Fastify();
    let hookDone!: () => void;
    const hookFinished = new Promise<void>((resolve) => (hookDone = resolve));
    // An awaiting onRequest hook, as authentication is (a key looked up in a store, a Redis round trip).
    app.addHook("onRequest", async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      hookDone();
    });
    app.addHook("preParsing", async (request, reply, payload) => decodedBody(request, reply, payload));
    app.post("/", async () => ({ ok: true }));
    await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const { port } = app.server.address() as { port: number };
      const socket = connect({ host: "127.0.0.1", port });
      socket.on("error", () => undefined);
      socket.write("POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 100\r\n\r\n");
      socket.write(gzipSync(Buffer.from('{"a":1}')).subarray(0, 5));
      await new Promise((resolve) => setTimeout(resolve, 20));
      socket.destroy();
      await hookFinished;
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(decodingBodies(), 0);
    } finally {
      await app.close();
    }
  });
});
