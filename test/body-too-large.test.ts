import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { drainLimit } from "../src/server/http-guards.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

const OVERSIZED = 2 * 1024 * 1024;
const ROUNDS = 8;

/** Everything a raw connection received until it closed, and whether writing to it failed. */
interface Exchange {
  received: string;
  writeError: string | undefined;
}

/** A raw POST /v1/infer announcing `contentLength` bytes of body, none sent yet; the server's answers collect in `received()`. */
function rawPost(serverUrl: string, contentLength: number): { socket: Socket; closed: Promise<void>; received: () => string } {
  const { hostname, port } = new URL(serverUrl);
  const socket = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
  socket.on("error", () => undefined);
  socket.on("end", () => socket.end());
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.write(`POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-length: ${contentLength}\r\n\r\n`);
  return { socket, closed, received: () => received };
}

/**
 * One keep-alive request, then an oversized POST on the same connection, as an
 * SDK reusing (or just opening) a connection does. The client sends the first
 * part of the body, waits until the server has answered (and closed, if it
 * does), then sends the rest: a client slower to upload than the server is to
 * answer. `close` adds the `connection: close` that Python's urllib sends.
 */
function keepAliveThenOversized(serverUrl: string, close: boolean, size = OVERSIZED): Promise<Exchange> {
  const { hostname, port } = new URL(serverUrl);
  // Half-open allowed: like Python's client, it goes on sending after the server's FIN.
  const socket: Socket = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
  let received = "";
  let writeError: string | undefined;
  let serverEnded = false;
  return new Promise((resolve) => {
    socket.on("error", (error: NodeJS.ErrnoException) => (writeError ??= error.code ?? error.message));
    socket.once("close", () => resolve({ received, writeError }));
    socket.once("end", () => (serverEnded = true));
    socket.once("connect", () => socket.write(`GET /health HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`));
    const body = Buffer.from(JSON.stringify({ specialist: "classify", prompt: "x".repeat(size) }));
    const head = 64 * 1024;
    let stage: "health" | "head" | "rest" = "health";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
      if (stage === "health" && received.includes("\r\n\r\n") && received.endsWith("}")) {
        stage = "head";
        socket.write(
          `POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
            (close ? "connection: close\r\n" : "") +
            "\r\n",
        );
        socket.write(body.subarray(0, head));
      } else if (stage === "head" && /HTTP\/1\.1 413 [^]*\r\n\r\n[^]*\}$/.test(received)) {
        stage = "rest";
        // Give a server that closes after its answer the time to do so, then send the rest.
        const sendRest = (): void => {
          if (socket.destroyed) return;
          socket.write(body.subarray(head), () => {
            if (!socket.destroyed) socket.end();
          });
        };
        if (serverEnded) sendRest();
        else setTimeout(sendRest, 300);
      }
    });
  });
}

describe("An oversized body on a reused connection", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({});
  });
  after(async () => {
    await server.close();
  });

  for (const close of [false, true]) {
    it(`reaches the client as a 413, never a reset connection (${close ? "with" : "without"} connection: close)`, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const { received, writeError } = await keepAliveThenOversized(server.url, close);
        const responses = received.split(/(?=HTTP\/1\.1 )/);
        assert.equal(responses.length, 2, `round ${round}: got ${JSON.stringify(received.slice(0, 300))} (write error ${writeError})`);
        assert.match(responses[0] ?? "", /^HTTP\/1\.1 200 /);
        assert.match(responses[1] ?? "", /^HTTP\/1\.1 413 /, `round ${round}`);
        assert.match(responses[1] ?? "", /"code":"request_too_large"/);
        assert.equal(writeError, undefined, `round ${round}: the upload failed with ${writeError}`);
      }
    });
  }
});

describe("A refused body is drained within bounds", () => {
  const BODY_LIMIT = 4096;
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ body_limit: BODY_LIMIT }, { env: { ALVEARE_REQUEST_TIMEOUT_MS: "400", ALVEARE_HEADERS_TIMEOUT_MS: "400" } });
  });
  after(async () => {
    await server.close();
  });

  it("cuts the connection once the discarded part passes the drain limit", async () => {
    const { socket, closed, received } = rawPost(server.url, 1024 ** 3);
    // Paced pieces (about 32 MB/s), so the drain limit, not the 400 ms request timeout, is what cuts.
    const piece = Buffer.alloc(64 * 1024, 120);
    const ceiling = 32 * 1024 * 1024;
    let sent = 0;
    while (!socket.destroyed && sent < ceiling) {
      socket.write(piece);
      sent += piece.length;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await closed;
    assert.match(received(), /^HTTP\/1\.1 413 /);
    assert.ok(sent < 4 * drainLimit(BODY_LIMIT), `the server read ${sent} bytes of a refused body`);
  });

  it("closes a drained connection whose body stalls, with no second answer", async () => {
    const { socket, closed, received } = rawPost(server.url, 10 * BODY_LIMIT);
    socket.write("x".repeat(100));
    await closed;
    assert.equal(received().match(/HTTP\/1\.1 /g)?.length, 1, received());
    assert.match(received(), /^HTTP\/1\.1 413 /);
  });

  it("keeps a keep-alive connection usable once the refused body has been read", async () => {
    const { hostname, port } = new URL(server.url);
    const socket = connect({ port: Number(port), host: hostname });
    let received = "";
    socket.on("error", () => undefined);
    const twoAnswers = new Promise<void>((resolve) =>
      socket.on("data", (chunk: Buffer) => {
        received += chunk.toString("utf8");
        if (/HTTP\/1\.1 200 [^]*\}$/.test(received)) resolve();
      }),
    );
    const body = "x".repeat(2 * BODY_LIMIT);
    socket.write(`POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    socket.write(`GET /health HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`);
    await twoAnswers;
    socket.destroy();
    assert.match(received, /^HTTP\/1\.1 413 [^]*HTTP\/1\.1 200 /);
  });
});

describe("A refused body sent with connection: close", () => {
  const BODY_LIMIT = 256 * 1024;
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ body_limit: BODY_LIMIT });
  });
  after(async () => {
    await server.close();
  });

  /** The whole exchange of one request that asks to close, its body sent in full and the connection left open by the client. */
  const closeAsked = (head: string, body: Buffer): Promise<{ received: string; closedInMs: number }> => {
    const { hostname, port } = new URL(server.url);
    const socket = connect({ port: Number(port), host: hostname });
    let received = "";
    const started = Date.now();
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
    socket.on("error", () => undefined);
    // Bounded: a connection kept alive would wait out the 72-second keep-alive timeout.
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.write(`${head}host: ${hostname}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`);
    socket.write(body);
    return new Promise((resolve) =>
      socket.once("close", () => {
        clearTimeout(timer);
        resolve({ received, closedInMs: Date.now() - started });
      }),
    );
  };

  it("closes the connection once the body is drained, as asked (announced too large, or inflating past the limit)", async () => {
    // The gzip body inflates past the limit within its first kilobyte, with most of its upload still to read.
    const inflating = gzipSync(Buffer.concat([Buffer.alloc(1024 * 1024, 32), randomBytes(BODY_LIMIT / 2)]));
    const cases: Array<[string, string, Buffer]> = [
      ["announced", "POST /v1/infer HTTP/1.1\r\n", Buffer.alloc(4 * BODY_LIMIT, 120)],
      ["gzip", "POST /v1/infer HTTP/1.1\r\ncontent-encoding: gzip\r\n", inflating],
    ];
    for (const [name, head, body] of cases) {
      assert.ok(name === "announced" || body.length < BODY_LIMIT, `${name}: ${body.length} bytes`);
      const { received, closedInMs } = await closeAsked(head, body);
      assert.match(received, /^HTTP\/1\.1 413 /, name);
      assert.equal(received.match(/HTTP\/1\.1 /g)?.length, 1, name);
      // It was kept alive: the client that asked to close waited for the keep-alive timeout.
      assert.ok(closedInMs < 2000, `${name}: closed after ${closedInMs} ms`);
    }
  });
});
