import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DistributionPacer } from "../src/engines/embedded/distribution-pacer.js";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

/**
 * A token with log-probabilities costs the event loop the whole vocabulary (node-llama-cpp hands it over as an array
 * and a Map): a probe measured another account's 200-token answer at 2.8 s beside one such request, 0.13 s without.
 * Counted here in the waits the reading generation made, not timed (bench/logprobs-pacing.ts measures the effect).
 */
describe("a generation with log-probabilities beside others", () => {
  let server: TestServer;
  let engine: EmbeddedEngine;
  before(async () => {
    server = await startTestServer({ engine: { parallel: 2, queue: 8 } });
    const found = server.registry.get("chat")?.engine;
    assert.ok(found instanceof EmbeddedEngine);
    engine = found;
  });
  after(() => server.close());

  const withLogprobs = {
    model: "alveare-chat",
    messages: [{ role: "user", content: "go" }],
    max_tokens: 12,
    temperature: 0,
    logprobs: true,
    top_logprobs: 5,
  };
  const ask = (body: Record<string, unknown>) => postJson(`${server.url}/v1/chat/completions`, body);

  it("alone, never waits", async () => {
    const before = engine.distributionWaits;
    const r = await ask(withLogprobs);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(engine.distributionWaits, before);
  });

  it("waits after its reads while a plain generation runs, and answers the same", async () => {
    const alone = await ask(withLogprobs);
    // Plain answers one after another (each a few hundred tokens on the tests' model) run while the other reads.
    let reading = true;
    let plainTokens = 0;
    const plain = (async () => {
      while (reading) {
        const r = await ask({ model: "alveare-chat", messages: [{ role: "user", content: "write" }], max_tokens: 900, temperature: 1, seed: 13 });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        plainTokens += (r.json.usage as { completion_tokens: number }).completion_tokens;
      }
    })();
    while (engine.busy === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const before = engine.distributionWaits;
    const beside = await ask(withLogprobs);
    const waits = engine.distributionWaits - before;
    reading = false;
    await plain;
    assert.ok(plainTokens > 0);
    assert.ok(waits >= 1, `waited ${waits} times`);
    // Pacing changes when tokens are read, never which: the same answer and log-probabilities (to the last bits a
    // batch shared with another sequence may change in llama.cpp's CPU kernels).
    type Entry = { token: string; logprob: number };
    const choice = (r: typeof alone) => (r.json.choices as Array<{ message: { content: string }; logprobs: { content: Entry[] } }>)[0]!;
    assert.equal(choice(beside).message.content, choice(alone).message.content);
    const [a, b] = [choice(alone).logprobs.content, choice(beside).logprobs.content];
    assert.deepEqual(
      b.map((e) => e.token),
      a.map((e) => e.token),
    );
    b.forEach((e, i) => assert.ok(Math.abs(e.logprob - a[i]!.logprob) < 1e-3, `entry ${i}: ${e.logprob} against ${a[i]!.logprob}`));
  });
});

describe("DistributionPacer", () => {
  it("makes a reader wait only while a plain generation is generating, not while it waits for its client", async () => {
    const pacer = new DistributionPacer();
    const reader = pacer.begin(true);
    assert.equal(pacer.afterRead(5), undefined, "alone");
    const otherReader = pacer.begin(true);
    assert.equal(pacer.afterRead(5), undefined, "beside readers only");
    const plain = pacer.begin(false);
    const wait = pacer.afterRead(5);
    assert.ok(wait instanceof Promise, "beside a plain generation");
    await wait;
    // A plain generation held back by its client (or another's turn on the context) generates nothing meanwhile.
    let release!: () => void;
    const idle = plain.idle(new Promise<void>((resolve) => (release = resolve)));
    assert.equal(pacer.afterRead(5), undefined, "beside a plain generation waiting for its client");
    release();
    await idle;
    assert.ok(pacer.afterRead(1) instanceof Promise, "counted again once it generates");
    const aborted = new AbortController();
    aborted.abort();
    assert.equal(pacer.afterRead(5, aborted.signal), undefined, "a reader whose client left does not wait");
    plain.end();
    plain.end();
    assert.equal(pacer.afterRead(5), undefined, "ended, once however often it is told");
    reader.end();
    otherReader.end();
    assert.equal(pacer.waited, 2);
  });
});
