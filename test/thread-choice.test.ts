import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { postJson, startTestServer } from "./helpers/fixtures.js";

describe("llama.cpp thread count", () => {
  it("is chosen by measurement at start-up when not set, and logged", async () => {
    const server = await startTestServer({}, { env: { ALVEARE_THREADS: "auto" } });
    try {
      const choice = server.logs.records().find((r) => r.msg === "chose llama.cpp thread count by measurement");
      assert.ok(choice, "the measurement is logged");
      const measured = choice.measured as Array<{ threads: number; tokensPerSecond: number; promptTokensPerSecond: number }>;
      assert.ok(measured.length >= 1 && measured.every((m) => m.tokensPerSecond > 0 && m.promptTokensPerSecond > 0));
      const best = measured.reduce((a, b) => (b.tokensPerSecond > a.tokensPerSecond ? b : a));
      const bestPrompt = measured.reduce((a, b) => (b.promptTokensPerSecond > a.promptTokensPerSecond ? b : a));
      assert.equal(choice.threads, best.threads, "the fastest measured decoding count is used");
      assert.equal(choice.promptThreads, bestPrompt.threads, "the fastest measured prompt-processing count is used");
      const ready = server.logs.records().find((r) => r.msg === "engine ready");
      assert.equal(ready?.threads, best.threads);
      assert.equal(ready?.promptThreads, bestPrompt.threads);
      assert.equal((await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "ok", max_tokens: 4 })).status, 200);
    } finally {
      await server.close();
    }
  });

  it("is taken as given from ALVEARE_THREADS, without measuring", async () => {
    const server = await startTestServer({}, { env: { ALVEARE_THREADS: "1" } });
    try {
      assert.equal(
        server.logs.records().some((r) => r.msg === "chose llama.cpp thread count by measurement"),
        false,
      );
      const ready = server.logs.records().find((r) => r.msg === "engine ready");
      assert.equal(ready?.threads, 1);
      assert.equal(ready?.promptThreads, 1);
    } finally {
      await server.close();
    }
  });
});
