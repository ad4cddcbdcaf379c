import assert from "node:assert/strict";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Agent, fetch as fetchWith } from "undici";
import { assertCutAtShutdown, cliKey, createKey, postJson, spawnServe, startTestServer, tempDir, tinyModel } from "./helpers/fixtures.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { HeldUpstream, readStreamCutBy } from "./helpers/held-upstream.js";

interface Readiness {
  status: number;
  body: { status: string; checks: Record<string, { ok: boolean } & Record<string, unknown>> };
}

async function ready(url: string): Promise<Readiness> {
  const r = await fetch(`${url}/ready`);
  return { status: r.status, body: (await r.json()) as Readiness["body"] };
}

/** Asks /ready until it gives `status` (the health checks run on their own clock); fails after a bound. */
async function readyBecomes(url: string, status: number): Promise<Readiness> {
  for (let i = 0; i < 400; i++) {
    const r = await ready(url);
    if (r.status === status) return r;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`/ready never answered ${status}`);
}

async function upstreamsBecome(url: string, ok: boolean): Promise<Readiness> {
  for (let i = 0; i < 400; i++) {
    const r = await ready(url);
    if (r.body.checks.upstreams?.ok === ok) return r;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`/ready never reported the upstreams ${ok ? "up" : "down"}`);
}

const held = (baseUrl: string): Record<string, unknown> => ({
  description: "held open by the test",
  system_prompt: "",
  remote: { base_url: baseUrl, model: "m" },
});

/** Starts a streamed chat completion of the held specialist; resolves once its headers arrived (status 200 checked). */
async function startStream(url: string, headers: Record<string, string> = { "content-type": "application/json" }): Promise<Response> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model: "alveare-faraway", messages: [{ role: "user", content: "hi" }], stream: true }),
  });
  assert.equal(response.status, 200);
  return response;
}

/** Reads an SSE response to its end, resolving with everything it said. */
async function readAll(response: Response): Promise<string> {
  return response.text();
}

describe("/ready", () => {
  it("is 503 while the models load and 200 once they have, with the database checked", async () => {
    let during: Readiness | undefined;
    let refused: { status: number; retryAfter: string | null; code: unknown } | undefined;
    const server = await startTestServer(
      {},
      {
        gated: true,
        onListening: async (url) => {
          during = await ready(url);
          const r = await postJson(`${url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content: "hi" }] });
          refused = { status: r.status, retryAfter: r.headers.get("retry-after"), code: (r.json.error as { code: string }).code };
        },
      },
    );
    try {
      assert.equal(during?.status, 503);
      assert.equal(during?.body.status, "not_ready");
      assert.equal(during?.body.checks.engines?.ok, false);
      assert.equal(during?.body.checks.engines?.state, "loading");
      assert.deepEqual(refused, { status: 503, retryAfter: "1", code: "overloaded" });
      const after = await ready(server.url);
      assert.equal(after.status, 200);
      assert.deepEqual(after.body.status, "ready");
      assert.deepEqual(Object.keys(after.body.checks).sort(), ["database", "engines", "shutdown", "upstreams"]);
      assert.ok(Object.values(after.body.checks).every((c) => c.ok));
      assert.equal((await fetch(`${server.url}/health`)).status, 200);
    } finally {
      await server.close();
    }
  });

  it("names the specialist whose upstreams are all down but stays ready (every node shares them), and reports it back up", async () => {
    const upstream = new FakeUpstream();
    const base = await upstream.start();
    const port = Number(new URL(base).port);
    const server = await startTestServer({
      specialists: {
        faraway: {
          description: "remote",
          system_prompt: "",
          remote: { base_url: base, model: "m", health_check_interval_ms: 100, connect_timeout_ms: 500 },
        },
      },
    });
    try {
      assert.equal((await ready(server.url)).status, 200);
      await upstream.stop();
      const down = await upstreamsBecome(server.url, false);
      assert.equal(down.status, 200, "a dead upstream does not take the node out of its balancer: the embedded specialists still serve");
      assert.equal(down.body.status, "ready");
      assert.deepEqual(down.body.checks.upstreams?.down, ["faraway"]);
      assert.deepEqual(down.body.checks.upstreams?.pools, { faraway: { healthy: 0, total: 1 } });
      assert.equal(down.body.checks.engines?.ok, true);
      const served = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "still here", max_tokens: 2 });
      assert.equal(served.status, 200);
      await upstream.start(port);
      const back = await upstreamsBecome(server.url, true);
      assert.equal(back.status, 200);
      assert.equal(back.body.checks.upstreams?.down, undefined);
    } finally {
      await server.close();
      await upstream.stop();
    }
  });

  it("counts every upstream of a pool, two models behind one URL included", async () => {
    const upstream = new FakeUpstream();
    const base = await upstream.start();
    const server = await startTestServer({
      specialists: {
        duo: {
          description: "two models of one server",
          system_prompt: "",
          remote: {
            upstreams: [
              { base_url: base, model: "a" },
              { base_url: base, model: "b" },
            ],
            health_check_interval_ms: 100,
            connect_timeout_ms: 500,
          },
        },
      },
    });
    try {
      assert.deepEqual((await ready(server.url)).body.checks.upstreams?.pools, { duo: { healthy: 2, total: 2 } });
      await upstream.stop();
      const down = await upstreamsBecome(server.url, false);
      assert.deepEqual(down.body.checks.upstreams?.pools, { duo: { healthy: 0, total: 2 } });
      assert.deepEqual(down.body.checks.upstreams?.down, ["duo"]);
    } finally {
      await server.close();
      await upstream.stop();
    }
  });

  it("turns 503 at once on drain: the running stream completes, new requests get 503 overloaded", async () => {
    const upstream = new HeldUpstream();
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } });
    try {
      const response = await startStream(server.url);
      await upstream.arrived();
      const closed = server.close(30_000);
      const draining = await ready(server.url);
      assert.equal(draining.status, 503);
      assert.equal(draining.body.checks.shutdown?.ok, false);
      assert.equal(draining.body.checks.shutdown?.state, "draining");
      const refused = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] });
      assert.equal(refused.status, 503);
      assert.equal((refused.json.error as { code: string }).code, "overloaded");
      assert.equal(refused.headers.get("retry-after"), "1");
      upstream.release();
      const text = await readAll(response);
      assert.match(text, /held /);
      assert.match(text, /answer/);
      assert.match(text, /data: \[DONE\]/);
      await closed;
    } finally {
      await server.close();
      await upstream.stop();
    }
  });

  it("answers a request on a kept-alive connection during shutdown in the catalogue's shape, and closes that connection", async () => {
    const server = await startTestServer();
    const { port } = new URL(server.url);
    const socket = connect(Number(port), "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
    socket.on("error", () => undefined);
    const ended = once(socket, "close");
    try {
      await once(socket, "connect");
      const body = JSON.stringify({ specialist: "classify", prompt: "hi" });
      // Headers and half the body before the shutdown begins, the rest and a second request after.
      socket.write(
        `POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      const closed = server.close(2_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.write(`${body.slice(5)}GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`);
      await ended;
      await closed;
      const [head = "", rest = ""] = received.split("\r\n\r\n", 2);
      assert.match(head, /^HTTP\/1.1 503/);
      assert.match(head, /\r\nconnection: close/i, "a draining node tells the client not to reuse the connection");
      assert.match(head, /\r\nretry-after: 1/i);
      assert.match(head, /\r\nx-request-id: /i);
      assert.equal((JSON.parse(rest) as { error: { code: string } }).error.code, "overloaded");
      assert.doesNotMatch(received, /"statusCode":503/, "never the framework's own 503 body");
      assert.equal(received.match(/HTTP\/1.1 /g)?.length, 1, "the second request is not answered on the closed connection");
    } finally {
      socket.destroy();
      await server.close();
    }
  });

  it("lets a running request with more choices than sequences finish within the drain", async () => {
    // One sequence: the second choice waits for the first to end, as choices beyond `parallel` do.
    const long = { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: "go ".repeat(150) } } };
    const server = await startTestServer({ engine: { parallel: 1, queue: 16 }, specialists: { long } });
    try {
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "two-choices-at-shutdown" },
        body: JSON.stringify({ model: "alveare-long", messages: [{ role: "user", content: "go" }], n: 2, stream: true, max_tokens: 1000 }),
      });
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = (await reader.read()).value ?? "";
      const closed = server.close(30_000);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      await closed;
      assert.match(text, /data: \[DONE\]/, "the request finished within the drain");
      assert.doesNotMatch(text, /"error"/);
      assert.match(text, /"index":1/, "the second choice ran");
      const line = server.logs.requests().find((l) => l.request_id === "two-choices-at-shutdown");
      assert.equal(line?.status, 200);
      assert.ok(Number(line?.completion_tokens) > 100, JSON.stringify(line));
    } finally {
      await server.close();
    }
  });

  it("cuts a request still running at the drain deadline: logged as the 503 overloaded it is, and given back, not billed as a 499", async () => {
    const upstream = new HeldUpstream();
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } }, { gated: true });
    try {
      const { auth, accountId } = await createKey(server, "scale");
      const answer = postJson(
        `${server.url}/v1/chat/completions`,
        { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] },
        auth,
      ).catch((error: unknown) => error);
      await upstream.arrived();
      await server.close(50);
      // Never released: the deadline aborted it, so the client saw no answer of the upstream's, but the 503 the log
      // says it got (its connection was dropped before, the client left to guess).
      const result = (await answer) as Awaited<ReturnType<typeof postJson>>;
      assert.equal(result.status, 503);
      assert.equal((result.json.error as { code: string }).code, "overloaded");
      assert.equal(result.headers.get("retry-after"), "1");
      // The server's doing, not the client's: the request is given back, as any server error is.
      await assertCutAtShutdown(server, server.logs.requests().at(-1), accountId);
    } finally {
      await upstream.stop();
    }
  });

  it("ends a stream still running at the drain deadline with an overloaded error event, not a bare close", async () => {
    const upstream = new HeldUpstream();
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } });
    try {
      const response = await startStream(server.url);
      // The first piece has reached the client: the stream has started when the deadline cuts it.
      const text = await readStreamCutBy(response, () => server.close(50));
      const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
      assert.ok(!events.includes("data: [DONE]"), "a cut stream does not end as a success");
      const last = JSON.parse(events.at(-1)!.slice("data: ".length)) as { error?: Record<string, unknown> };
      assert.deepEqual(last.error, {
        message: "This server shut down before the answer was complete. Retry on another node.",
        type: "server_error",
        code: "overloaded",
        param: null,
      });
      const line = server.logs.requests().at(-1);
      assert.equal(line?.status, 503, "logged as the 503 overloaded its client got");
      assert.equal(line?.code, "overloaded");
      // No usage came: "held " (5 bytes) is estimated at one token per 3 bytes, above its one piece (README, "Metering without usage").
      assert.equal(line?.completion_tokens, 2, "the tokens produced are in its line");
    } finally {
      await upstream.stop();
    }
  });

  it("ends the drain once its running requests end, though their clients keep their connections alive", { timeout: 120_000 }, async () => {
    const upstream = new HeldUpstream();
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } });
    // A client (or a balancer) that keeps connections for minutes, as undici does after a Keep-Alive hint.
    const agent = new Agent({ keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });
    const request = { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] };
    try {
      const whole = fetchWith(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request),
        dispatcher: agent,
      });
      const stream = await fetchWith(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...request, stream: true }),
        dispatcher: agent,
      });
      while (upstream.headers.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      // A deadline far past the test's timeout: only the requests' end may end the drain.
      const closed = server.close(600_000);
      upstream.release();
      const answer = await whole;
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get("connection"), "close", "a whole answer given while draining tells the client not to reuse the connection");
      await answer.text();
      assert.match(await stream.text(), /data: \[DONE\]/);
      await closed;
    } finally {
      await agent.destroy();
      await server.close();
      await upstream.stop();
    }
  });

  it("closes at the drain deadline even with a connection that never sent a request", async () => {
    const server = await startTestServer();
    const idle = connect(Number(new URL(server.url).port), "127.0.0.1");
    idle.on("error", () => undefined);
    await once(idle, "connect");
    try {
      const started = performance.now();
      const outcome = await Promise.race([
        server.close(100).then(() => "closed"),
        new Promise((resolve) => setTimeout(resolve, 10_000, "still open")),
      ]);
      assert.equal(outcome, "closed", "a preconnected socket does not hold the shutdown");
      assert.ok(performance.now() - started < 5_000);
    } finally {
      idle.destroy();
      await server.close();
    }
  });

  it("meters the pieces a client received before it left a remote stream", async () => {
    const upstream = new HeldUpstream();
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } });
    const agent = new Agent();
    try {
      const controller = new AbortController();
      const response = await fetchWith(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "left-remote-stream" },
        body: JSON.stringify({ model: "alveare-faraway", messages: [{ role: "user", content: "hi" }], stream: true }),
        signal: controller.signal,
        // Its own pool: after the abort, fetch's shared pool opens a spare connection that would hold the server's close.
        dispatcher: agent,
      });
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("held ")) text += (await reader.read()).value ?? "";
      // The upstream holds the rest: the client leaves while the engine waits for the next piece.
      controller.abort();
      let line: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && line === undefined; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        line = server.logs.requests().find((l) => l.request_id === "left-remote-stream");
      }
      assert.equal(line?.status, 499);
      // The estimate for what it received ("held ", 5 bytes, one piece): one token per 3 bytes, at least one per piece.
      assert.equal(line?.completion_tokens, 2, "the piece it received is metered, not 0");
    } finally {
      await agent.destroy();
      await server.close();
      await upstream.stop();
    }
  });

  it("answers a stream cut by the drain deadline before its first event with 503 overloaded and Retry-After", async () => {
    const upstream = new FakeUpstream();
    upstream.fault = "hold";
    const server = await startTestServer({ specialists: { faraway: held(await upstream.start()) } });
    try {
      const answer = postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-faraway",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      while (upstream.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      await server.close(50);
      const r = await answer;
      assert.equal(r.status, 503);
      assert.equal((r.json.error as { code: string }).code, "overloaded");
      assert.equal(r.headers.get("retry-after"), "1");
    } finally {
      upstream.release();
      await upstream.stop();
    }
  });
});

describe("SIGTERM", () => {
  it("drains: /ready turns 503, new requests are refused, the stream in flight completes, exit 0", async () => {
    const upstream = new HeldUpstream();
    const dir = tempDir();
    const dataDir = join(dir, "data");
    const config = join(dir, "config.json");
    writeFileSync(config, JSON.stringify({ specialists: { faraway: held(await upstream.start()) } }));
    const env = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_CONFIG: "", ALVEARE_ADMIN_TOKEN: "", ALVEARE_DRAIN_SECONDS: "60" };
    const { key } = cliKey(dataDir, "professional", env);
    const { child, url, output } = await spawnServe(["--config", config, "--data-dir", dataDir, "--model", await tinyModel()], env);
    try {
      const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
      const response = await startStream(url, auth);
      await upstream.arrived();
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await readyBecomes(url, 503);
      const refused = await postJson(`${url}/v1/chat/completions`, { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] }, auth);
      assert.equal(refused.status, 503);
      assert.equal((refused.json.error as { code: string }).code, "overloaded");
      assert.equal(refused.headers.get("retry-after"), "1");
      upstream.release();
      assert.match(await readAll(response), /answer[\s\S]*data: \[DONE\]/);
      const [code] = await exited;
      assert.equal(code, 0, output());
      assert.match(output(), /shutting down: refusing new requests/);
      if (!child.stdout!.readableEnded) await once(child.stdout!, "end");
      const last = output().trim().split("\n").at(-1)!;
      assert.match(last, /stopped/, "the last line says the server stopped");
      assert.match(last, /exit_code.{0,4}0/);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await upstream.stop();
    }
  });
});

describe("requests that arrive while a node drains", () => {
  it("are answered 503 with Connection: close, a body read first so the upload is not cut, a bodiless one at once", async () => {
    const long = { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: "go ".repeat(300) } } };
    const server = await startTestServer({ engine: { parallel: 1, queue: 4 }, specialists: { long } });
    const running = new AbortController();
    try {
      // A running stream keeps the node draining while the new requests arrive.
      const stream = await fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "alveare-long", messages: [{ role: "user", content: "go" }], stream: true, max_tokens: 2000 }),
        signal: running.signal,
      });
      const reader = stream.body!.getReader();
      await reader.read();
      const closed = server.close(20_000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const { port } = new URL(server.url);
      /** Sends `text` on a new connection and returns what came back once the server closed it. */
      const exchange = async (text: string): Promise<string> => {
        const socket = connect(Number(port), "127.0.0.1");
        let received = "";
        socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
        socket.on("error", () => undefined);
        const ended = once(socket, "close");
        await once(socket, "connect");
        socket.write(text);
        await ended;
        return received;
      };
      const body = JSON.stringify({ specialist: "classify", prompt: "hi" });
      for (const request of [
        `POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n`,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
      ]) {
        const received = await exchange(request);
        const [head = "", rest = ""] = received.split("\r\n\r\n", 2);
        assert.match(head, /^HTTP\/1.1 503/, received);
        assert.match(head, /\r\nconnection: close/i);
        assert.equal((JSON.parse(rest) as { error: { code: string } }).error.code, "overloaded");
        assert.equal(received.match(/HTTP\/1.1 /g)?.length, 1, "nothing more on a connection the server closed");
      }
      running.abort();
      await closed;
    } finally {
      running.abort();
      await server.close();
    }
  });
});
