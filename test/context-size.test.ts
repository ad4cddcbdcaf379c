import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startTestServer } from "./helpers/fixtures.js";

const WARNING = "a specialist's context_size is longer than its model was trained for";
const GENERATING = ["classify", "summarise", "extract", "qa", "chat", "code"];

/** The test models are trained on 2,048 tokens. */
describe("a specialist's context_size against its model's trained length", () => {
  it("is said at start when longer, once per loaded model, and the server still serves", async () => {
    const server = await startTestServer({ specialists: { classify: { context_size: 8192 } } });
    try {
      const warned = server.logs.records().filter((r) => r.msg === WARNING);
      // Every default specialist shares the base model: one engine, whose context is the longest asked for.
      assert.equal(warned.length, 1);
      assert.equal(warned[0]!.level, 40);
      assert.equal(warned[0]!.context_size, 8192);
      assert.equal(warned[0]!.trained_context_size, 2048);
      const r = await fetch(`${server.url}/v1/infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ specialist: "classify", prompt: "fine", max_tokens: 4 }),
      });
      assert.equal(r.status, 200);
    } finally {
      await server.close();
    }
  });

  it("says nothing when every context fits the trained length", async () => {
    const server = await startTestServer({ specialists: Object.fromEntries(GENERATING.map((id) => [id, { context_size: 2048 }])) });
    try {
      assert.deepEqual(
        server.logs.records().filter((r) => r.msg === WARNING),
        [],
      );
    } finally {
      await server.close();
    }
  });
});
