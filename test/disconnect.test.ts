import assert from "node:assert/strict";
import { request } from "node:http";
import { copyFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { getLlama, LlamaContextSequence, LlamaLogLevel } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import type { GenerationRequest } from "../src/engines/types.js";
import { postJson, startTestServer, tempDir, tinyModel, type TestServer } from "./helpers/fixtures.js";
import { until } from "./helpers/until.js";

/** Starts a long stream, reads `events` events, then drops the connection. */
function dropMidStream(server: TestServer, events: number, seed: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      model: "alveare-long",
      messages: [{ role: "user", content: "go on forever" }],
      max_tokens: 4096,
      stream: true,
      seed,
    });
    const url = new URL(`${server.url}/v1/chat/completions`);
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let seen = 0;
        res.on("data", (chunk: Buffer) => {
          seen += chunk.toString().split("data: ").length - 1;
          if (seen >= events) {
            req.destroy();
            resolve();
          }
        });
        res.on("error", () => undefined);
      },
    );
    req.on("error", (e) => (e.message.includes("socket hang up") || (e as NodeJS.ErrnoException).code === "ECONNRESET" ? resolve() : reject(e)));
    req.end(body);
  });
}

/** A specialist whose grammar admits one 400-word answer, generated token by token: the model cannot end early. */
const LONG = { long: { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: "go ".repeat(400) } } } };

const settle = (ms = 100): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("a stream and its connection", () => {
  it("keeps the connection alive by default, and closes it after [DONE] when the client asked to", async () => {
    const server = await startTestServer({});
    try {
      // A raw socket: the test sees exactly what the server sends, and whether the server ends the connection.
      const stream = (connection: string) =>
        new Promise<{ header: string | undefined; body: string; closed: boolean }>((resolve, reject) => {
          const url = new URL(server.url);
          const body = JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 4, stream: true });
          const socket = connect(Number(url.port), url.hostname);
          let text = "";
          let closed = false;
          socket.on("data", (chunk: Buffer) => {
            text += chunk.toString();
            // The chunked body's last chunk: then wait a moment to see whether the server ends the connection.
            if (text.endsWith("0\r\n\r\n")) {
              setTimeout(() => {
                socket.destroy();
                resolve({ header: /^connection: (.*)$/im.exec(text)?.[1]?.trim(), body: text, closed });
              }, 300);
            }
          });
          socket.on("end", () => (closed = true));
          socket.on("error", reject);
          socket.write(
            `POST /v1/chat/completions HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nConnection: ${connection}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
          );
        });
      const closing = await stream("close");
      assert.equal(closing.header, "close");
      assert.match(closing.body, /data: \[DONE\]\n\n/);
      assert.equal(closing.closed, true, "the server closed the connection after the stream");
      const kept = await stream("keep-alive");
      assert.equal(kept.header, "keep-alive");
      assert.equal(kept.closed, false);
    } finally {
      await server.close();
    }
  });
});

describe("an engine closing", () => {
  it("answers the requests still queued for it 503 overloaded, saying the server is shutting down", async () => {
    const server = await startTestServer({ engine: { parallel: 1, queue: 4 }, specialists: LONG });
    try {
      const engine = server.registry.get("long")!.engine as EmbeddedEngine;
      const running = new AbortController();
      // The one sequence is taken by a long answer; the next request waits in the queue.
      const first = fetch(`${server.url}/v1/infer`, {
        method: "POST",
        signal: running.signal,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ specialist: "long", prompt: "talk", max_tokens: 4096 }),
      }).catch(() => undefined);
      await until("the long answer on the one sequence", () => engine.busy === 1);
      const queued = postJson(`${server.url}/v1/infer`, { specialist: "long", prompt: "me too", max_tokens: 8 });
      await until("the next request in the queue", () => engine.queued === 1);
      const closing = engine.close();
      const refused = await queued;
      assert.equal(refused.status, 503);
      const error = refused.json.error as { code: string; message: string };
      assert.equal(error.code, "overloaded");
      assert.match(error.message, /shutting down/);
      running.abort();
      await first;
      await closing;
    } finally {
      await server.close();
    }
  });
});

describe("a shutdown with two embedded engines", () => {
  it("refuses the queue of every engine at once, not the second only once the first's running requests end", async () => {
    const other = join(tempDir(), "other.gguf");
    copyFileSync(await tinyModel(), other);
    // Thousands of tokens: each engine's long answer is still running when the queues are refused.
    const onModel = (model: string) => ({ ...LONG.long, model, output: { type: "json_schema", schema: { const: "go ".repeat(3000) } } });
    const server = await startTestServer({
      models: { base: await tinyModel(), other },
      engine: { parallel: 1, queue: 4 },
      specialists: { longa: onModel("base"), longb: onModel("other") },
    });
    const engines = ["longa", "longb"].map((id) => server.registry.get(id)!.engine as EmbeddedEngine);
    assert.notEqual(engines[0], engines[1]);
    const running = new AbortController();
    const ask = (specialist: string, maxTokens: number, signal?: AbortSignal) =>
      fetch(`${server.url}/v1/infer`, {
        method: "POST",
        signal,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ specialist, prompt: "talk", max_tokens: maxTokens }),
      });
    // Each engine's one sequence holds a long answer, and one request waits behind it.
    const answering = ["longa", "longb"].map((id) => ask(id, 4096, running.signal).catch(() => undefined));
    await until("both engines busy", () => engines.every((e) => e.busy === 1));
    const queued = ["longa", "longb"].map((id) => ask(id, 8));
    await until("a request queued on each", () => engines.every((e) => e.queued === 1));
    const closing = server.close(60_000);
    for (const answer of await Promise.all(queued)) {
      assert.equal(answer.status, 503);
      const { error } = (await answer.json()) as { error: { code: string; message: string } };
      assert.deepEqual([error.code, /shutting down/.test(error.message)], ["overloaded", true]);
    }
    assert.deepEqual(
      engines.map((e) => e.busy),
      [1, 1],
      "both refused while each engine's long answer still ran",
    );
    running.abort();
    await Promise.all(answering);
    await closing;
  });
});

describe("an engine closing while a request prepares", () => {
  it("answers a request still building its grammar 503 overloaded, not 500 on a freed context", async () => {
    const server = await startTestServer({ engine: { parallel: 2, queue: 4 } });
    try {
      const engine = server.registry.get("extract")!.engine as EmbeddedEngine;
      const grammars = (engine as unknown as { grammars: GrammarCache }).grammars;
      const get = grammars.get.bind(grammars);
      let closing: Promise<void> | undefined;
      // The engine closes (a shutdown) while the request's new schema is being made into a grammar.
      grammars.get = (constraint) => {
        const grammar = get(constraint);
        closing ??= engine.close();
        return grammar;
      };
      const schema = { type: "object", properties: { total: { type: "number" } }, required: ["total"] };
      const refused = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-extract",
        messages: [{ role: "user", content: "total 4" }],
        response_format: { type: "json_schema", json_schema: { name: "total", schema } },
      });
      await closing;
      assert.equal(refused.status, 503, JSON.stringify(refused.json));
      const error = refused.json.error as { code: string; message: string };
      assert.equal(error.code, "overloaded");
      assert.match(error.message, /shutting down/);
      assert.deepEqual(
        server.logs.records().filter((r) => (r.level as number) >= 50),
        [],
      );
    } finally {
      await server.close();
    }
  });
});

describe("client disconnects", () => {
  it("stop generation within a token and free the slot for the next request", async () => {
    const server = await startTestServer({ engine: { parallel: 1, queue: 4 }, specialists: LONG });
    try {
      await dropMidStream(server, 3, 1);
      // With one slot, this request can only be served if the dropped stream gave it back.
      const next = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
      });
      assert.equal(next.status, 200);
      const dropped = await until("the dropped stream's line, logged as aborted", () => server.logs.requests().find((l) => l.aborted === true));
      assert.equal(dropped.status, 499);
      assert.equal(dropped.client_ip, "127.0.0.1", "the line names the client that left");
      // Tokens produced after the client left: at most a couple in flight, never the 4096 asked for.
      assert.ok((dropped.completion_tokens as number) <= 6, `completion tokens ${String(dropped.completion_tokens)}`);
    } finally {
      await server.close();
    }
  });

  it("stops a non-streaming generation when its client leaves", async () => {
    const server = await startTestServer({ engine: { parallel: 1, queue: 4 }, specialists: LONG });
    try {
      const controller = new AbortController();
      const pending = fetch(`${server.url}/v1/infer`, {
        method: "POST",
        signal: controller.signal,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ specialist: "long", prompt: "talk", max_tokens: 4096 }),
      }).catch(() => undefined);
      const engine = server.registry.get("long")!.engine as EmbeddedEngine;
      await until("the answer under way", () => engine.busy === 1);
      controller.abort();
      await pending;
      const line = await until("the aborted request's line", () => server.logs.requests().find((l) => l.aborted === true));
      assert.ok((line.completion_tokens as number) < 4096);
      assert.equal(engine.queued, 0);
    } finally {
      await server.close();
    }
  });

  it("leaves no growing memory over 200 dropped streams", async () => {
    const server = await startTestServer({ engine: { parallel: 2, queue: 8 }, specialists: LONG });
    try {
      for (let i = 0; i < 20; i++) await dropMidStream(server, 2, i); // warm-up: buffers, JIT
      await settle();
      global.gc?.();
      const before = process.memoryUsage();
      for (let i = 0; i < 200; i++) await dropMidStream(server, 2, i);
      await settle(300);
      global.gc?.();
      const afterMem = process.memoryUsage();
      const rssGrowth = (afterMem.rss - before.rss) / 1024 / 1024;
      assert.ok(rssGrowth < 40, `RSS grew ${rssGrowth.toFixed(1)} MiB over 200 dropped streams`);
      const engine = server.registry.get("chat")!.engine as EmbeddedEngine;
      assert.equal(engine.queued, 0);
      const served = await Promise.all([1, 2].map(() => postJson(`${server.url}/v1/infer`, { specialist: "chat", prompt: "hi", max_tokens: 2 })));
      assert.deepEqual(
        served.map((r) => r.status),
        [200, 200],
        "both slots are free again",
      );
      assert.equal(server.logs.requests().filter((l) => l.aborted === true).length, 220);
    } finally {
      await server.close();
    }
  });
});

describe("a request aborted while its prompt is evaluated", () => {
  it("stops at the next batch, is metered with the prompt tokens evaluated, and frees the sequence", async () => {
    const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: await tinyModel() });
    // 16-token batches: a ~600-token prompt takes dozens of them.
    const context = await model.createContext({ contextSize: 1024, sequences: 1, threads: 1, batchSize: 16 });
    const engine = new EmbeddedEngine({ name: "abandon", model, context, grammars: new GrammarCache(llama), maxQueue: 4 });
    const evaluate = LlamaContextSequence.prototype.evaluateWithoutGeneratingNewTokens;
    const controller = new AbortController();
    let batches = 0;
    // Counts the batches evaluated without generating, and aborts the request once three are done.
    LlamaContextSequence.prototype.evaluateWithoutGeneratingNewTokens = async function (this: LlamaContextSequence, ...args) {
      await evaluate.apply(this, args);
      if (++batches === 3) controller.abort();
    };
    const request = (signal: AbortSignal, content: string): GenerationRequest => ({
      messages: [{ role: "user", content }],
      maxTokens: 4,
      temperature: 0,
      topP: 1,
      stop: [],
      constraint: { type: "text" },
      signal,
    });
    try {
      const long = "the product and the revenue of the quarter ".repeat(30);
      const promptTokens = engine.countPromptTokens([{ role: "user", content: long }]);
      assert.ok(promptTokens > 10 * 16, `${promptTokens} tokens`);
      const cut = await engine.generate(request(controller.signal, long));
      assert.equal(cut.aborted, true);
      assert.equal(batches, 3, "no batch after the abort");
      assert.equal(cut.promptTokens, 3 * 16, "metered with what was evaluated");
      assert.equal(cut.completionTokens, 0);
      LlamaContextSequence.prototype.evaluateWithoutGeneratingNewTokens = evaluate;
      // The only sequence is free again, and serves a whole request.
      const next = await engine.generate(request(new AbortController().signal, "hello"));
      assert.equal(next.aborted, false);
      assert.ok(next.completionTokens > 0);
      assert.equal(engine.busy, 0);
      // Aborted once it holds its sequence but before any batch: metered alike whether one choice, several or labels,
      // with only what the sequence already held of the prompt (its cache), never the whole prompt unevaluated.
      for (const content of ["hello", long]) {
        const metered: number[] = [];
        for (const extra of [{}, { choices: 2 }, { constraint: { type: "labels" as const, labels: ["yes", "no"] } }]) {
          const leaving = new AbortController();
          const early = await engine.generate({ ...request(leaving.signal, content), ...extra, onStarted: () => leaving.abort() });
          assert.deepEqual([early.aborted, early.completionTokens], [true, 0]);
          metered.push(early.promptTokens);
        }
        assert.ok(
          metered.every((n) => n === metered[0]),
          `${content.length}: ${metered.join(", ")}`,
        );
        if (content === long) assert.ok(metered[0]! < promptTokens, `${metered[0]} of ${promptTokens}`);
      }
    } finally {
      LlamaContextSequence.prototype.evaluateWithoutGeneratingNewTokens = evaluate;
      await engine.close();
      await context.dispose();
      await model.dispose();
    }
  });
});
