import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { postJson, startTestServer } from "./helpers/fixtures.js";

/** A specialist whose grammar admits one 400-word answer, generated token by token: the model cannot end early. */
const LONG = { long: { description: "never stops early", system_prompt: "", output: { type: "json_schema", schema: { const: "go ".repeat(400) } } } };

/** Resolves once `check` holds, looking again on every turn of the event loop. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

/** Opens a stream and resolves with the time its first event arrived, plus the whole body. */
async function timedStream(url: string, body: unknown): Promise<{ firstByteAt: number; text: string; status: number }> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const reader = response.body!.getReader();
  let firstByteAt = 0;
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (firstByteAt === 0) firstByteAt = performance.now();
    text += new TextDecoder().decode(value);
  }
  return { firstByteAt, text, status: response.status };
}

describe("concurrency", () => {
  it("serves every request beyond the parallel slots, each one whole", async () => {
    const server = await startTestServer({ engine: { parallel: 2, queue: 8 } });
    try {
      const n = 7;
      const runs = [];
      for (let i = 0; i < n; i++) {
        runs.push(
          timedStream(server.url, {
            model: "alveare-chat",
            messages: [{ role: "user", content: `request ${i}` }],
            max_tokens: 40,
            stream: true,
            seed: i,
          }),
        );
        // Space the arrivals so their order is known.
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      const results = await Promise.all(runs);
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.ok(r.text.trimEnd().endsWith("data: [DONE]"), "each stream completes");
      }
      const statuses = server.logs
        .requests()
        .filter((l) => l.route === "/v1/chat/completions")
        .map((l) => l.status);
      assert.deepEqual(statuses, Array(n).fill(200));
    } finally {
      await server.close();
    }
  });

  it("serves queued requests in order of arrival", async () => {
    // One slot: requests run one at a time, so the order they finish in is the order they were served in.
    const server = await startTestServer({ engine: { parallel: 1, queue: 8 } });
    try {
      const engine = server.registry.get("chat")!.engine as EmbeddedEngine;
      const finished: number[] = [];
      const runs = [];
      for (let i = 0; i < 5; i++) {
        runs.push(
          postJson(`${server.url}/v1/infer`, { specialist: "chat", prompt: `request ${i}`, max_tokens: 30, seed: i }).then((r) => {
            assert.equal(r.status, 200);
            finished.push(i);
          }),
        );
        // The next is sent once this one has reached the engine (finished, generating or queued): its arrival order
        // is then certain, where a fixed 15 ms gap was not on a loaded machine.
        await until(() => finished.length + engine.busy + engine.queued > i);
      }
      await Promise.all(runs);
      assert.deepEqual(finished, [0, 1, 2, 3, 4]);
    } finally {
      await server.close();
    }
  });

  it("answers 503 overloaded with Retry-After past the queue bound, and recovers", async () => {
    const server = await startTestServer({ engine: { parallel: 1, queue: 2 } });
    try {
      const body = { model: "alveare-chat", messages: [{ role: "user", content: "long" }], max_tokens: 200, seed: 1 };
      const all = await Promise.all(Array.from({ length: 6 }, () => postJson(`${server.url}/v1/chat/completions`, body)));
      const ok = all.filter((r) => r.status === 200);
      const overloaded = all.filter((r) => r.status === 503);
      assert.equal(ok.length, 3, "one running and two queued are served");
      assert.equal(overloaded.length, 3);
      for (const r of overloaded) {
        assert.equal((r.json.error as { code: string }).code, "overloaded");
        assert.equal((r.json.error as { type: string }).type, "server_error");
        assert.equal(r.headers.get("retry-after"), "1");
      }
      const after = await postJson(`${server.url}/v1/chat/completions`, { ...body, max_tokens: 4 });
      assert.equal(after.status, 200);
    } finally {
      await server.close();
    }
  });

  it("counts only waiting requests against the queue bound, not the other choices of a running one", async () => {
    const server = await startTestServer({ engine: { parallel: 1, queue: 1 }, specialists: LONG });
    const leaving = new AbortController();
    try {
      const engine = server.registry.get("long")!.engine as EmbeddedEngine;
      // Three choices on one sequence: the first generates, the other two wait for it.
      const several = fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        signal: leaving.signal,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "alveare-long", messages: [{ role: "user", content: "go" }], max_tokens: 4096, n: 3, stream: true }),
      }).catch(() => undefined);
      await until(() => engine.queued === 2);
      // No request waits yet, so one may: it is queued, not refused.
      const next = postJson(`${server.url}/v1/infer`, { specialist: "long", prompt: "go", max_tokens: 2 });
      await until(() => engine.queued === 3 || server.logs.requests().length > 0);
      leaving.abort();
      await several;
      const answer = await next;
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
    } finally {
      leaving.abort();
      await server.close();
    }
  });
});
