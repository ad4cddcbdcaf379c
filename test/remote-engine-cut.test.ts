import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { RemoteEngine } from "../src/engines/remote/remote-engine.js";
import { RequestAbort } from "../src/server/request-context.js";
import { ApiError } from "../src/errors.js";

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
      const engine = new RemoteEngine({
        upstreams: [{ baseUrl: upstream.url, model: "m" }],
        connectTimeoutMs: 2000,
        readTimeoutMs: 2000,
        healthCheckIntervalMs: 60_000,
      });
      const abort = new RequestAbort();
      try {
        const error = await engine
          .generate({
            messages: [{ role: "user", content: "hi" }],
            maxTokens: 5,
            temperature: 0,
            topP: 1,
            stop: [],
            constraint: { type: "text" },
            get signal() {
              return abort.signal;
            },
            abortWatch: abort,
          })
          .then(
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
