import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { postJson, startTestServer, tinyModel, type TestServer } from "./helpers/fixtures.js";

interface Entry {
  token: string;
  logprob: number;
  top: Map<string, number>;
}

const USERS = [
  "what was the revenue this quarter",
  "summarise the costs",
  "json name value",
  "the product is great",
  "code function best",
  "love hate",
];

/**
 * Several requests decoding together share each batch's outputs. llama.cpp may hand a batch's
 * outputs back in another order and puts them right lazily, on the first read, without a lock;
 * node-llama-cpp reads them from one worker thread per sequence. A request with several choices
 * (which loads its prompt's state into other sequences) beside others is what reorders most.
 * Here every answer given among concurrent ones must be the answer the same request gets alone.
 */
describe("concurrent requests never read each other's outputs", () => {
  let server: TestServer;
  before(async () => {
    // A vocabulary of real size makes each output row long enough for a race over it to show.
    const model = await tinyModel({ layers: 8, embedding: 512, heads: 8, feedForward: 1024, vocabulary: 4000 });
    const example = (i: number): string => `Example ${i}: the user asks about the quarter and you answer with the figure only.`;
    const specialist = (name: string) => ({
      description: name,
      system_prompt: `You are ${name}. ${Array.from({ length: 6 }, (_, i) => example(i)).join(" ")}`,
      output: { type: "text" },
    });
    server = await startTestServer({
      models: { base: model },
      engine: { parallel: 4, queue: 32, snapshot_memory_mb: 0 },
      specialists: { alpha: specialist("alpha"), beta: specialist("beta"), gamma: specialist("gamma") },
    });
  });
  after(async () => {
    await server.close();
  });

  /** Each choice's entries: the token, its log-probability and the two most likely tokens' log-probabilities by text. */
  async function ask(body: Record<string, unknown>): Promise<Entry[][]> {
    const r = await postJson(`${server.url}/v1/chat/completions`, body);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    type Logprob = { token: string; logprob: number; top_logprobs: Array<{ token: string; logprob: number }> };
    const choices = r.json.choices as Array<{ logprobs: { content: Logprob[] } }>;
    return choices.map((c) =>
      c.logprobs.content.map((e) => ({ token: e.token, logprob: e.logprob, top: new Map(e.top_logprobs.map((t) => [t.token, t.logprob])) })),
    );
  }

  it("each choice of each concurrent answer is the same request's answer alone, at temperature 0", async () => {
    let compared = 0;
    let ties = 0;
    for (let round = 0; round < 16; round++) {
      const bodies = USERS.map((content, i) => ({
        model: `alveare-${["alpha", "beta", "gamma"][(i + round) % 3]}`,
        messages: [{ role: "user", content: `${content} ${round}` }],
        max_tokens: 8,
        temperature: 0,
        logprobs: true,
        ...(i % 3 === 0 ? { n: 2 } : {}),
      }));
      const together = await Promise.all(bodies.map(ask));
      for (const [i, body] of bodies.entries()) {
        const [alone] = await ask({ ...body, n: 1 });
        for (const [c, choice] of together[i]!.entries()) {
          for (const [k, entry] of choice.entries()) {
            const expected = alone![k]!;
            const where = `round ${round}, request ${i}, choice ${c}, token ${k}`;
            // Batches of other sizes may differ in the last bits of llama.cpp's kernels (~1e-3 at most here), never more.
            assert.ok(
              Math.abs(entry.logprob - expected.logprob) < 3e-3,
              `${where}: ${entry.token} ${entry.logprob}, alone ${expected.token} ${expected.logprob}`,
            );
            compared++;
            if (entry.token === expected.token) continue;
            // A near-tie that those last bits tipped the other way: the rest of the answer follows another token.
            // (asked again with the runner-up's log-probability, only here: asking for it changes how the engine batches)
            const [tied] = await ask({ ...body, n: 1, top_logprobs: 2 });
            const other = tied![k]!.top.get(entry.token);
            assert.ok(other !== undefined && Math.abs(other - expected.logprob) < 3e-3, `${where}: ${entry.token} where alone ${expected.token}`);
            ties++;
            break;
          }
        }
      }
    }
    assert.ok(compared > 500 && ties < compared / 50, `${compared} tokens compared, ${ties} near-ties`);
  });
});
