import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { HeldUpstream, readStreamCutBy } from "./helpers/held-upstream.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";

/**
 * A node that shuts down gives its requests' limits back to the nodes that stay: a request cut at the drain's
 * deadline finishes after its stream has ended, and Redis was closed under it, so its concurrency slot stayed
 * taken for the slot's lease (30 s) and its token reservation for the window, on every other node.
 */
describe("a request cut at a node's shutdown, in the shared mode", () => {
  const upstream = new HeldUpstream();
  const redisPrefix = testPrefix("shutdown-limits");
  let database: string;
  let config: Record<string, unknown>;
  let env: Record<string, string>;
  const nodes: TestServer[] = [];

  before(async () => {
    database = await freshDatabase();
    env = { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: SHARED_REDIS_URL, ALVEARE_REDIS_PREFIX: redisPrefix };
    config = {
      specialists: { faraway: { description: "held open by the test", system_prompt: "", remote: { base_url: await upstream.start(), model: "m" } } },
      plans: {
        single: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", max_concurrent_requests: 1, tokens_per_minute: 3000 },
      },
    };
  });
  after(async () => {
    for (const node of nodes) await node.close();
    await upstream.stop();
    await deletePrefix(redisPrefix);
    await dropDatabase(database);
  });

  it("frees its concurrency slot and gives back its token reservation before the node closes Redis", async () => {
    const leaving = await startTestServer(config, { gated: true, env });
    nodes.push(leaving);
    const { auth } = await createKey(leaving, "single");
    const ask = { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }], max_tokens: 2000 };
    const response = await fetch(`${leaving.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ ...ask, stream: true }),
    });
    assert.equal(response.status, 200);
    const text = await readStreamCutBy(response, () => leaving.close(50));
    assert.match(text, /"code":"overloaded"/, "the deadline cut the stream");
    assert.equal(leaving.logs.requests().at(-1)?.shutdown_cut, true);
    assert.ok(!leaving.logs.records().some((r) => r.ends_owed !== undefined), "no end was left owed");

    // Another node, the same key at once: the slot (one at a time) and the 2,000 tokens (of 3,000 a minute) are free.
    upstream.release();
    const staying = await startTestServer(config, { gated: true, env });
    nodes.push(staying);
    const served = await postJson(`${staying.url}/v1/chat/completions`, ask, auth);
    assert.equal(served.status, 200, JSON.stringify(served.json));
  });
});
