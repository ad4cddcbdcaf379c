import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { TINY_LLAMA, writeRandomLora } from "./fixtures/gguf/random-llama.js";
import { postJson, startTestServer, tempDir } from "./helpers/fixtures.js";

describe("specialists share a base model", () => {
  it("loads a model file once for every specialist, and a LoRA specialist changes the output on the same weights", async () => {
    const adapter = join(tempDir(), "tuned-lora.gguf");
    await writeRandomLora(adapter, { base: TINY_LLAMA, alpha: 64 });
    const server = await startTestServer({
      specialists: {
        plain: { description: "base weights", system_prompt: "Be brief." },
        tuned: { description: "base weights plus an adapter", system_prompt: "Be brief.", lora: { path: adapter, scale: 1 } },
      },
    });
    try {
      const engine = (id: string) => server.registry.get(id)!.engine as EmbeddedEngine;
      // All six defaults and `plain` decode in one context; `tuned` has its own context on the same weights.
      for (const id of ["classify", "summarise", "extract", "qa", "chat", "code"]) assert.equal(engine(id), engine("plain"));
      assert.notEqual(engine("tuned"), engine("plain"));
      assert.equal(engine("tuned").model, engine("plain").model);
      const ask = (specialist: string) => postJson(`${server.url}/v1/infer`, { specialist, prompt: "hello world", max_tokens: 12, temperature: 0 });
      const [plain, tuned] = await Promise.all([ask("plain"), ask("tuned")]);
      assert.equal(plain.status, 200);
      assert.equal(tuned.status, 200);
      assert.notEqual(tuned.json.result, plain.json.result, "the adapter changes what the model says");
      assert.equal((await ask("plain")).json.result, plain.json.result, "greedy output is stable");
    } finally {
      await server.close();
    }
  });
});
