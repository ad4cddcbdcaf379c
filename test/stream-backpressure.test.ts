import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { after, describe, it } from "node:test";
import Fastify from "fastify";
import type { GenerationResult } from "../src/engines/types.js";
import { RequestAbort } from "../src/server/request-context.js";
import { EventStream } from "../src/server/sse.js";
import { toGenerationRequest } from "../src/specialists/generation.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await settle(20);
  }
}

/** Sends one HTTP request on a raw socket, reads `readBytes` of the answer, then stops reading (the kernel's buffers fill). */
function stopReadingAfter(
  url: string,
  path: string,
  body: unknown,
  readBytes: number,
): Promise<{ socket: Socket; head: string; closed: () => boolean }> {
  const { hostname, port } = new URL(url);
  const json = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = "";
    let closed = false;
    socket.on("close", () => (closed = true));
    socket.on("error", () => undefined);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString("latin1");
      if (text.length >= readBytes) {
        socket.off("data", onData);
        socket.pause();
        resolve({ socket, head: text.slice(0, text.indexOf("\r\n\r\n")), closed: () => closed });
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
    );
  });
}

describe("a stream whose client stops reading", () => {
  it("EventStream: the producer waits while the client reads nothing, goes on when it reads, and a client that never reads again is cut", async () => {
    const TOTAL = 1024; // events of 64 KB: 64 MB, far more than the kernel's buffers hold
    const app = Fastify();
    let produced = 0;
    let waits = 0;
    let stalls = 0;
    app.get("/events", async (_request, reply) => {
      const stream = new EventStream(reply, 1_000, () => stalls++);
      const event = { text: "x".repeat(64 * 1024) };
      for (let i = 0; i < TOTAL && !reply.raw.destroyed; i++) {
        stream.send(event);
        produced++;
        const wait = stream.whenWritable();
        if (wait !== undefined) {
          waits++;
          await wait;
        }
      }
      stream.done();
      return reply;
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const port = (app.server.address() as AddressInfo).port;
    const open = (): { socket: Socket; received: () => string; closed: () => boolean } => {
      const socket = connect(port, "127.0.0.1");
      let tail = "";
      let closed = false;
      socket.on("error", () => undefined);
      socket.on("close", () => (closed = true));
      socket.on("data", (chunk: Buffer) => (tail = (tail + chunk.toString("latin1")).slice(-64)));
      socket.pause();
      socket.write(`GET /events HTTP/1.1\r\nHost: x\r\n\r\n`);
      return { socket, received: () => tail, closed: () => closed };
    };
    try {
      // A client that pauses, then reads again: production stops, then goes on to the end; nobody is cut.
      const reader = open();
      await until("the producer to be told to wait", () => waits > 0);
      await settle(100);
      const stoppedAt = produced;
      await settle(300);
      assert.equal(produced, stoppedAt, "nothing produced while the client reads nothing");
      assert.ok(stoppedAt < TOTAL, `stopped after ${stoppedAt} of ${TOTAL} events`);
      reader.socket.resume();
      await until("the whole stream", () => reader.received().includes("data: [DONE]"), 10_000);
      assert.equal(produced, TOTAL);
      assert.equal(stalls, 0, "a client that reads again is not cut");
      reader.socket.destroy();

      // A client that never reads again is cut after the stall time, and production ends there.
      produced = 0;
      const silent = open();
      await until("the silent client to be cut", () => stalls === 1, 10_000);
      const cutAt = produced;
      silent.socket.resume();
      await until("the silent client's connection to close", silent.closed, 5_000);
      await settle(100);
      assert.equal(produced, cutAt, "nothing produced after the cut");
      assert.ok(cutAt < TOTAL);
    } finally {
      app.server.closeAllConnections();
      await app.close();
    }
  });

  describe("the embedded engine", () => {
    let server: TestServer;
    after(() => server?.close());

    /** A specialist whose grammar admits one long answer, generated token by token: the model cannot end early. */
    const WORDS = "go ".repeat(200);
    const LONG_ANSWER = JSON.stringify(WORDS);

    it("asks for no further token while the text's reader is behind, serves other requests meanwhile, and goes on once it catches up", async () => {
      server = await startTestServer({
        engine: { parallel: 2, queue: 4 },
        specialists: { long: { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: WORDS } } } },
      });
      const specialist = server.registry.get("long")!;
      const generate = (behind: () => Promise<void> | undefined, abort = new RequestAbort()) => {
        const pieces: string[] = [];
        const request = toGenerationRequest(
          specialist,
          {
            messages: [{ role: "user", content: "talk" }],
            maxTokens: 4096,
            temperature: 1,
            onText: (piece) => pieces.push(piece),
            whenWritable: behind,
          },
          abort,
        );
        return { pieces, abort, result: specialist.engine.generate(request) };
      };

      let release!: () => void;
      const caughtUp = new Promise<void>((resolve) => (release = resolve));
      let waiting = false;
      const paused = generate(() => {
        if (paused.pieces.length < 5) return undefined;
        waiting = true;
        return caughtUp;
      });
      await until("five pieces of text", () => waiting);
      const sentWhenPaused = paused.pieces.length;
      await settle(300);
      assert.equal(paused.pieces.length, sentWhenPaused, "no text while the reader is behind");

      // The other sequence serves meanwhile.
      const other = generate(() => undefined);
      const otherResult = await other.result;
      assert.equal(otherResult.finishReason, "stop");
      assert.equal(otherResult.text, LONG_ANSWER);

      release();
      const done: GenerationResult = await paused.result;
      assert.equal(done.aborted, false);
      assert.equal(done.text, LONG_ANSWER, "the whole answer once the reader caught up");
      assert.equal(paused.pieces.join(""), LONG_ANSWER);
    });

    it("ends a paused generation at once when the request is aborted (a shutdown's deadline), though its reader never catches up", async () => {
      const specialist = server.registry.get("long")!;
      const abort = new RequestAbort();
      let pieces = 0;
      let waiting = false;
      const request = toGenerationRequest(
        specialist,
        {
          messages: [{ role: "user", content: "talk" }],
          maxTokens: 4096,
          temperature: 1,
          onText: () => pieces++,
          // A reader that never reads again: only the abort can end the wait.
          whenWritable: () => {
            if (pieces < 3) return undefined;
            waiting = true;
            return new Promise<void>(() => undefined);
          },
        },
        abort,
      );
      const result = specialist.engine.generate(request);
      await until("the generation to pause", () => waiting);
      abort.abort(new Error("shutting down"));
      const ended = await Promise.race([result, settle(5_000).then(() => undefined)]);
      assert.ok(ended !== undefined, "the paused generation ended on the abort");
      assert.equal(ended.aborted, true);
      assert.ok(ended.completionTokens < 20, `stopped where it paused (${ended.completionTokens} tokens)`);
    });
  });

  describe("over HTTP, from a remote engine", () => {
    /** An upstream that streams as fast as its socket takes it; counts what it got written and whether it was left. */
    class FloodUpstream {
      written = 0;
      finished = false;
      left = false;
      private server: Server | undefined;
      constructor(
        private readonly chunks: number,
        private readonly content: string,
      ) {}

      async start(): Promise<string> {
        this.server = createServer((req, res) => {
          req.resume();
          req.on("end", () => {
            res.writeHead(200, { "content-type": "text/event-stream" });
            res.on("close", () => (this.left = !this.finished));
            const chunk = `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: this.content }, finish_reason: null }] })}\n\n`;
            const pump = (): void => {
              while (this.written < this.chunks) {
                this.written++;
                if (!res.write(chunk)) {
                  res.once("drain", pump);
                  return;
                }
              }
              this.finished = true;
              res.end(
                `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`,
              );
            };
            pump();
          });
        });
        await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
        return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
      }

      close(): Promise<void> {
        this.server?.closeAllConnections();
        return new Promise((resolve) => this.server?.close(() => resolve()) ?? resolve());
      }
    }

    it("stops reading the upstream while the client is behind, and cuts a client that reads nothing for ALVEARE_STREAM_STALL_MS (499, logged as stalled)", async () => {
      // 2,000 chunks of 32 KB: 64 MB, far more than the sockets on both sides hold.
      const upstream = new FloodUpstream(2_000, "y".repeat(32 * 1024));
      const baseUrl = await upstream.start();
      const server = await startTestServer(
        { specialists: { flood: { description: "a fast upstream", system_prompt: "", remote: { base_url: baseUrl, model: "m" } } } },
        { env: { ALVEARE_STREAM_STALL_MS: "400" } },
      );
      try {
        const client = await stopReadingAfter(
          server.url,
          "/v1/chat/completions",
          { model: "alveare-flood", messages: [{ role: "user", content: "hi" }], stream: true },
          64 * 1024,
        );
        assert.match(client.head, /^HTTP\/1\.1 200/);
        await until("the server to cut the silent client", () => server.logs.requests().some((r) => r.stalled === true), 15_000);
        const line = server.logs.requests().find((r) => r.stalled === true)!;
        assert.equal(line.status, 499, "metered and logged as a client that left");
        assert.equal(upstream.finished, false, "the upstream was not read to its end");
        assert.ok(upstream.written < 1_000, `the upstream wrote ${upstream.written} of 2,000 chunks before the server stopped reading`);
        await until("the upstream connection to be closed", () => upstream.left, 5_000);
        client.socket.resume();
        await until("the client's connection to close", client.closed, 5_000);
      } finally {
        await server.close();
        await upstream.close();
      }
    });
  });
});
