import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { usePhaseThreads } from "../src/engines/embedded/phase-threads.js";
import { tinyModel } from "./helpers/fixtures.js";

describe("per-phase llama.cpp threads", () => {
  it("runs batches with prompt tokens on the prompt count and one-token-per-sequence batches on the decoding count", async () => {
    // maxThreads 0: node-llama-cpp grants each batch the count it asks for, whatever this machine's cores.
    const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 0 });
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const context = await model.createContext({ contextSize: 256, sequences: 2, threads: 3 });
    try {
      assert.equal(usePhaseThreads(context, { decode: 1, prompt: 3 }), true);
      const sequence = context.getSequence();
      await sequence.evaluateWithoutGeneratingNewTokens(model.tokenize("the quarterly report says revenue grew and costs fell"));
      assert.equal(context.currentThreads, 3, "prompt processing");
      await sequence.evaluateWithoutGeneratingNewTokens(model.tokenize("so").slice(0, 1));
      assert.equal(context.currentThreads, 1, "decoding");
      await sequence.evaluateWithoutGeneratingNewTokens(model.tokenize(" the outlook is good for the year"));
      assert.equal(context.currentThreads, 3, "prompt processing again");
    } finally {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    }
  });
});
