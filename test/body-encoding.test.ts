import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import { after, before, describe, it } from "node:test";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { createKey, startTestServer, type TestServer } from "./helpers/fixtures.js";

interface Answer {
  status: number;
  json: { error?: { type: string; code: string; message: string }; choices?: unknown[] };
}

/** One POST over `agent` (a single keep-alive socket), the body sent as given with the headers given. */
function post(server: TestServer, agent: Agent, path: string, body: Buffer, headers: Record<string, string>): Promise<Answer> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": body.length, ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Answer["json"] }));
      },
    );
    req.on("error", reject);
    req.end(body);
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

  it("hold the body limit on the decoded body: a small upload that inflates past it is a 413, and the node serves on", async () => {
    // 64 MiB of JSON in ~65 KB of gzip: decoded whole, it would be held in memory 64 times over the 1 MiB limit.
    const bomb = gzipSync(
      Buffer.from(JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: " ".repeat(64 * 1024 * 1024) }] })),
    );
    assert.ok(bomb.length < 1024 * 1024, "the compressed body is within the limit");
    const heapBefore = process.memoryUsage().rss;
    const answer = await post(server, agent, "/v1/chat/completions", bomb, { ...auth, "content-encoding": "gzip" });
    assert.equal(answer.status, 413);
    assert.equal(answer.json.error?.code, "request_too_large");
    assert.ok(process.memoryUsage().rss - heapBefore < 48 * 1024 * 1024, "the decoded body was not kept");
    const next = await post(server, agent, "/v1/chat/completions", gzipSync(chat("after the bomb")), { ...auth, "content-encoding": "gzip" });
    assert.equal(next.status, 200, JSON.stringify(next.json));
  });
});
