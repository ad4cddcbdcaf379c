import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaModel } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { labelTokens } from "../src/engines/embedded/label-scores.js";
import type { GenerationRequest, GenerationResult } from "../src/engines/types.js";
import { tinyModel } from "./helpers/fixtures.js";

const LABEL = "neutral the revenue";

describe("a label cut by a stop string", () => {
  let llama: Llama;
  let model: LlamaModel;
  let context: LlamaContext;
  let engine: EmbeddedEngine;
  before(async () => {
    llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1 });
    engine = new EmbeddedEngine({ name: "labels", model, context, grammars: new GrammarCache(llama), maxQueue: 4 });
  });
  after(async () => {
    await engine.close();
    await model.dispose();
    await llama.dispose();
  });

  const ask = (stop: string[]): Promise<GenerationResult> =>
    engine.generate({
      messages: [{ role: "user", content: "how was the quarter" }],
      maxTokens: 32,
      temperature: 0,
      topP: 1,
      stop,
      constraint: { type: "labels", labels: [LABEL] },
      topLogprobs: 1,
      signal: new AbortController().signal,
    } satisfies GenerationRequest);

  it("counts the tokens up to the one completing the stop string, and reports log-probabilities for those of the answer, as generated text does", async () => {
    const tokens = labelTokens(model, LABEL);
    const whole = await ask([]);
    // One label, with log-probabilities: it is scored, and is the answer whatever the random model prefers.
    assert.equal(whole.text, LABEL);
    assert.equal(whole.completionTokens, tokens.length);
    assert.ok(tokens.length > 4, `${tokens.length} tokens`);
    for (const stop of ["e", "ut", "the", "rev"]) {
      const cut = await ask([stop]);
      // Through the first token whose text, with those before it, holds the stop string.
      const through = tokens.findIndex((_, i) => model.detokenize(tokens.slice(0, i + 1)).includes(stop)) + 1;
      assert.ok(through > 0 && through < tokens.length, `${stop}: ${through}`);
      assert.equal(cut.text, LABEL.slice(0, LABEL.indexOf(stop)));
      assert.equal(cut.finishReason, "stop");
      assert.equal(cut.completionTokens, through, `${stop}: metered with the tokens a generation would have produced`);
      // The tokens whose text starts before the stop string's: the answer's, one straddling the cut included.
      const described = tokens.filter((_, i) => model.detokenize(tokens.slice(0, i)).length < cut.text.length).length;
      assert.equal(cut.logprobs?.length, described, `${stop}: log-probabilities of the answer's tokens only`);
      assert.ok(
        cut
          .logprobs!.map((e) => e.token)
          .join("")
          .startsWith(cut.text),
        `${stop}: the entries spell the answer`,
      );
    }
  });
});
