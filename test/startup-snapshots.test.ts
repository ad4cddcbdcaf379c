import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EmbeddedEngine, type PromptCacheStats } from "../src/engines/embedded/embedded-engine.js";
import { embeddedEngines } from "../src/engines/embedded/embedded-kind.js";
import type { ChatMessage } from "../src/engines/types.js";
import { createLogger } from "../src/logger.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { LogCapture, tempDir, tinyModel } from "./helpers/fixtures.js";

/** Padded like real specialists' prompts (instructions, examples), so every prefix is long enough to be snapshotted. */
const EXAMPLES = Array.from({ length: 4 }, (_, i) => `Example ${i + 1}: the user asks about the quarter; you answer with the figure only.`).join(
  "\n",
);

describe("system prompt snapshots at start-up", () => {
  it("builds every specialist's prefix when the engine loads, logs their memory, and a first request evaluates only its own turn", async () => {
    const logs = new LogCapture();
    const modelPath = await tinyModel();
    const specialists = defaultSpecialists()
      .filter((s) => s.kind !== "embeddings")
      .slice(0, 4)
      .map((s) => ({ id: s.id, systemPrompt: `${s.systemPrompt}\n\n${EXAMPLES}` }));
    const started = await embeddedEngines.start(
      specialists.map((s) => ({
        id: s.id,
        contextSize: 1024,
        engine: { kind: "embedded" as const, model: modelPath },
        systemPrompt: s.systemPrompt,
      })),
      { settings: { parallel: 2, queue: 8, threads: 1 }, models: {}, dataDir: tempDir(), logger: createLogger("info", logs) },
    );
    try {
      const engine = started.engines.get(specialists[0]!.id);
      assert.ok(engine instanceof EmbeddedEngine);
      // One model file: every specialist shares this engine.
      for (const s of specialists) assert.equal(started.engines.get(s.id), engine);
      assert.equal(engine.promptCache.snapshotBuilds, specialists.length, "one snapshot per specialist, built before any request");

      const ready = logs.records().find((r) => r.msg === "system prompt snapshots ready");
      assert.ok(ready !== undefined, "start-up logs the snapshots");
      assert.equal(ready.built, specialists.length);
      assert.ok(typeof ready.totalBytes === "number" && ready.totalBytes > 0);
      assert.ok(typeof ready.budgetBytes === "number" && ready.totalBytes <= ready.budgetBytes, "within the memory budget");

      for (const s of specialists) {
        const messages: ChatMessage[] = [
          { role: "system", content: s.systemPrompt },
          { role: "user", content: `what was the revenue of ${s.id} this quarter` },
        ];
        const before: PromptCacheStats = engine.promptCache;
        const result = await engine.generate({
          messages,
          maxTokens: 1,
          temperature: 0,
          topP: 1,
          stop: [],
          constraint: { type: "text" },
          signal: new AbortController().signal,
        });
        const after: PromptCacheStats = engine.promptCache;
        assert.equal(result.promptTokens, engine.countPromptTokens(messages));
        assert.equal(after.snapshotBuilds, before.snapshotBuilds, `${s.id}: the first request builds nothing`);
        assert.equal(
          after.promptTokensEvaluated - before.promptTokensEvaluated,
          engine.countPromptTokens(messages) - engine.snapshotPrefixLength(messages),
          `${s.id}: its first request evaluates only the suffix`,
        );
      }
    } finally {
      await started.close();
    }
  });
});
