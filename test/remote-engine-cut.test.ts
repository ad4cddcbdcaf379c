import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { IDLE_CONNECTION_MS, RemoteEngine } from "../src/engines/remote/remote-engine.js";
import { engineOn } from "./helpers/remote-engine.js";
import { RequestAbort } from "../src/server/request-context.js";
import { ApiError } from "../src/errors.js";
import type { GenerationRequest } from "../src/engines/types.js";

const canSpawnPython = spawnSync("python3", ["--version"]).status === 0;

/** A one-message request ended by `abort`; `extra` adds or replaces fields. */
const requestUnder = (abort: RequestAbort, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({
  messages: [{ role: "user", content: "hi" }],
  maxTokens: 50,
  temperature: 0,
  topP: 1,
  stop: [],
  constraint: { type: "text" },
  ...extra,
  get signal() {
    return abort.signal;
  },
  abortWatch: abort,
});

/** An upstream that answers `status` with a declared 1000-byte body, then drops the connection after a few bytes. */
async function cuttingUpstream(status: number): Promise<{ url: string; hits: () => number; close: () => void }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      hits++;
      res.writeHead(status, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"error":"bus');
      setTimeout(() => res.socket?.destroy(), 20);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/v1`, hits: () => hits, close: () => server.close() };
}

describe("remote engine: an answer cut after the upstream received the request", () => {
  for (const [status, expected] of [
    [200, 502],
    [429, 503],
    [400, 400],
  ] as const) {
    it(`is not sent again, and HTTP ${status} still maps to ${expected}`, async () => {
      const upstream = await cuttingUpstream(status);
      const engine = engineOn(upstream.url);
      const abort = new RequestAbort();
      try {
        const error = await engine.generate(requestUnder(abort)).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.equal(upstream.hits(), 1, "the upstream got the request once, never again");
        assert.equal((error as ApiError).status, expected);
      } finally {
        await engine.close();
        upstream.close();
      }
    });
  }
});

/** An upstream that streams `events` at once and then holds the stream open until the test ends it. */
async function holdingStream(events: object[]): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.method === "GET") return void res.writeHead(200, { "content-type": "application/json" }).end('{"data":[]}');
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe("remote engine: a stream cut while waiting for the upstream's next piece", () => {
  const toolPiece = (tool: object) => ({ choices: [{ index: 0, delta: { tool_calls: [tool] }, finish_reason: null }] });
  const logprobPiece = (content: string) => ({
    choices: [{ index: 0, delta: { content }, logprobs: { content: [{ token: content || "<0x20>", logprob: -0.5, top_logprobs: [] }] } }],
  });
  // [name, the upstream's events, the request, deltas the client gets, completion tokens metered]
  for (const [name, events, extra, deliveries, expected] of [
    ["text", [{ choices: [{ index: 0, delta: { content: "a" } }] }, { choices: [{ index: 0, delta: { content: "b" } }] }], {}, 2, 2],
    [
      "a tool call",
      [
        toolPiece({ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }),
        toolPiece({ index: 0, function: { arguments: '{"a"' } }),
        toolPiece({ index: 0, function: { arguments: ":1" } }),
      ],
      { tools: { tools: [{ name: "f", parameters: { type: "object" } }], choice: "auto", parallel: false } },
      // The call is forwarded once its arguments begin (its name whole): two deltas for three pieces.
      2,
      3,
    ],
    ["log-probabilities with an empty piece", [logprobPiece("a"), logprobPiece("")], { topLogprobs: 0 }, 2, 2],
  ] as const) {
    it(`meters ${name} for the pieces received, and the prompt the upstream read`, async () => {
      const upstream = await holdingStream(events as unknown as object[]);
      const engine = engineOn(upstream.url);
      const abort = new RequestAbort();
      let received = 0;
      try {
        const result = engine.generate(
          requestUnder(abort, { ...(extra as Partial<GenerationRequest>), onText: () => void received++, onToolCall: () => void received++ }),
        );
        while (received < (deliveries as number)) await new Promise((resolve) => setTimeout(resolve, 10));
        abort.abort(new Error("client disconnected"));
        const r = await result;
        assert.equal(r.aborted, true);
        assert.equal(r.completionTokens, expected);
        // The upstream had read the prompt (it sent pieces): metered, estimated as no usage came.
        assert.ok(r.promptTokens >= 8, `prompt tokens: ${r.promptTokens}`);
      } finally {
        await engine.close();
        upstream.close();
      }
    });
  }
});

describe("remote engine: a stream cut with more text than max_tokens allowed and no usage", () => {
  it("meters at most max_tokens, as a finished answer's estimate", async () => {
    const upstream = await holdingStream([{ choices: [{ index: 0, delta: { content: "B".repeat(3000) } }] }]);
    const engine = engineOn(upstream.url);
    const abort = new RequestAbort();
    let received = 0;
    try {
      const result = engine.generate(requestUnder(abort, { maxTokens: 5, onText: () => void received++ }));
      while (received < 1) await new Promise((resolve) => setTimeout(resolve, 10));
      abort.abort(new Error("client disconnected"));
      const r = await result;
      assert.equal(r.aborted, true);
      assert.equal(r.completionTokens, 5);
    } finally {
      await engine.close();
      upstream.close();
    }
  });
});

/**
 * A connection dropped after the request was written is not retried: the upstream may have it (one that crashed on
 * the prompt, or dropped it), and sent again it would be generated twice, billed twice by a paid upstream, and a
 * prompt that crashes its upstream would take down the next one too.
 */
describe("remote engine: a request the upstream may have received is not sent again", () => {
  /** Reads each request whole, then drops its connection without answering. */
  async function droppingAfterReading(): Promise<{ url: string; hits: () => number; close: () => void }> {
    let hits = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        if (req.method === "GET") return void res.writeHead(200, { "content-type": "application/json" }).end('{"data":[]}');
        hits++;
        res.socket?.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}/v1`,
      hits: () => hits,
      close: () => {
        server.closeAllConnections();
        server.close();
      },
    };
  }

  for (const stream of [false, true]) {
    it(`answers a ${stream ? "streamed" : "whole"} request 502 after one try, on one upstream or two`, async () => {
      const first = await droppingAfterReading();
      const second = await droppingAfterReading();
      const engine = new RemoteEngine({
        upstreams: [
          { baseUrl: first.url, model: "m" },
          { baseUrl: second.url, model: "m" },
        ],
        connectTimeoutMs: 2000,
        readTimeoutMs: 5000,
        answerTimeoutMs: 10_000,
        healthCheckIntervalMs: 60_000,
      });
      try {
        const error = await engine.generate(requestUnder(new RequestAbort(), stream ? { onText: () => undefined } : {})).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.equal((error as ApiError).status, 502);
        assert.equal(first.hits() + second.hits(), 1, "the request reached one upstream, once");
      } finally {
        await engine.close();
        first.close();
        second.close();
      }
    });
  }
});

/**
 * The deadline holds while no connection is made yet. A listener that never accepts, with a backlog of none, takes one
 * connection into its queue and drops the SYNs of the next ones, so connecting takes until connect_timeout_ms, which
 * here is well past the answer deadline. Node accepts for its listeners by itself, so python3 holds the socket.
 */
describe("remote engine: the answer deadline while connecting", { skip: canSpawnPython ? false : "needs python3" }, () => {
  it("fails a whole or streamed answer at the deadline though its connection is still being made", async () => {
    const holder = spawn(
      "python3",
      [
        "-c",
        "import socket, sys\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()",
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    const port = Number(await new Promise<string>((resolve) => holder.stdout.once("data", (data: Buffer) => resolve(String(data)))));
    // The one connection the queue takes.
    const filler = net.connect(port, "127.0.0.1");
    await new Promise((resolve) => filler.once("connect", resolve));
    const engine = new RemoteEngine({
      upstreams: [{ baseUrl: `http://127.0.0.1:${port}/v1`, model: "m" }],
      connectTimeoutMs: 8_000,
      readTimeoutMs: 8_000,
      answerTimeoutMs: 1_000,
      healthCheckIntervalMs: 60_000,
    });
    try {
      for (const stream of [false, true]) {
        const started = performance.now();
        const error = await engine.generate(requestUnder(new RequestAbort(), stream ? { onText: () => undefined } : {})).then(
          () => undefined,
          (e: unknown) => e,
        );
        const ms = performance.now() - started;
        assert.equal((error as ApiError).status, 504, `stream: ${stream}: ${String(error)}`);
        assert.match((error as ApiError).message, /its answer took over 1000 ms in all/);
        assert.ok(ms >= 1_000 && ms < 2_500, `stream: ${stream}: ended after ${Math.round(ms)} ms, not at connect_timeout_ms`);
      }
    } finally {
      await engine.close();
      filler.destroy();
      holder.stdin.end();
    }
  });
});

describe("remote engine: idle connections", () => {
  it("are not reused past IDLE_CONNECTION_MS when the upstream does not say how long it keeps them", async () => {
    const sockets = new Set<unknown>();
    const server = http.createServer((req, res) => {
      sockets.add(req.socket);
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] }));
      });
    });
    // Keeps idle connections without saying for how long (no Keep-Alive header, as uvicorn): undici would otherwise
    // follow the header's hint, whatever our own setting.
    server.keepAliveTimeout = 0;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const engine = engineOn(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
    try {
      await engine.generate(requestUnder(new RequestAbort()));
      // A request sent the moment an answer is read may take a second connection (undici hands it back just after).
      await new Promise((resolve) => setTimeout(resolve, 100));
      await engine.generate(requestUnder(new RequestAbort()));
      assert.equal(sockets.size, 1, "reused while fresh");
      await new Promise((resolve) => setTimeout(resolve, IDLE_CONNECTION_MS + 300));
      await engine.generate(requestUnder(new RequestAbort()));
      assert.equal(sockets.size, 2, "a connection idle past IDLE_CONNECTION_MS is not used again");
    } finally {
      await engine.close();
      server.closeAllConnections();
      server.close();
    }
  });
});
