import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaGrammarEvaluationState, LlamaJsonSchemaGrammar, TokenBias, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { Utf8Guard } from "../src/engines/embedded/utf8-guard.js";
import { writeRandomLlama } from "./fixtures/gguf/random-llama.js";

/**
 * The guard on a vocabulary as large as a real model's (8,000 tokens): inside a character it rules out
 * too many tokens to bias the native sampler, so there the grammar alone decides, and the guard must
 * follow the grammar's reading of whatever comes.
 */
describe("UTF-8 guard on a large vocabulary", () => {
  const dir = mkdtempSync(join(tmpdir(), "alveare-utf8-"));
  let llama: Llama;
  let model: LlamaModel;
  let names: readonly string[];
  const token = (piece: string): Token => names.indexOf(piece) as Token;
  before(async () => {
    const path = join(dir, "v8k.gguf");
    await writeRandomLlama(path, { layers: 1, embedding: 64, heads: 4, feedForward: 128, vocabulary: 8000 });
    llama = await getLlama({ gpu: false, build: "never" });
    model = await llama.loadModel({ modelPath: path });
    names = (model.fileInfo.metadata as unknown as { tokenizer: { ggml: { tokens: string[] } } }).tokenizer.ggml.tokens;
  });
  after(async () => {
    await model.dispose();
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("rules out what cannot start a character, and knows where a character ends", () => {
    const guard = Utf8Guard.for(model)!;
    assert.ok(guard !== undefined, "the vocabulary's bytes are read");
    for (const piece of ["<0x80>", "<0xBF>", "<0xC0>", "<0xC1>", "<0xF5>", "<0xF8>", "<0xFF>"])
      assert.equal(guard.allows(token(piece)), false, piece);
    for (const piece of ["<0x41>", "<0xC3>", "<0xE2>", "<0xF0>", "a"]) assert.equal(guard.allows(token(piece)), true, piece);
    guard.accept(token("<0xE2>"));
    assert.equal(guard.allows(token("a")), false, "inside a character only its continuation bytes");
    assert.equal(guard.allows(token("<0x82>")), true);
    guard.accept(token("<0x82>"));
    guard.accept(token("<0xAC>")); // "€" is whole
    assert.equal(guard.allows(token("a")), true);
    assert.equal(guard.allows(token("<0x80>")), false);
  });

  it("keeps a JSON answer valid after a continuation byte the grammar let through unbiased", async () => {
    const context = await model.createContext({ contextSize: 256, sequences: 1 });
    try {
      for (const temperature of [0, 0.8, 1.5]) {
        const sequence = context.getSequence();
        const grammar = new LlamaJsonSchemaGrammar(llama, { type: "string", maxLength: 4 } as const);
        const state = new LlamaGrammarEvaluationState({ model, grammar });
        const guard = Utf8Guard.for(model)!;
        // A quote, then ED and A0: a surrogate's start, which the grammar allows and the guard cannot bias against here.
        const forced = [token('"'), token("<0xED>"), token("<0xA0>")];
        const only = (wanted: Token): TokenBias => {
          const bias = new TokenBias(model.tokenizer);
          for (let t = 0; t < names.length; t++) if (t !== wanted) bias.set(t as Token, "never");
          return bias;
        };
        const out: Token[] = [];
        const bias = (): TokenBias => (out.length < forced.length ? only(forced[out.length]!) : guard.bias());
        for await (const next of sequence.evaluate(model.tokenize("hello"), {
          temperature,
          seed: 3,
          grammarEvaluationState: state,
          tokenBias: bias,
        })) {
          out.push(next);
          guard.accept(next);
          if (out.length >= 40) break;
        }
        assert.deepEqual(out.slice(0, 3), forced);
        const text = model.detokenize(out);
        // Before, the guard lost count of the character here, and its bias and the grammar left no token
        // but one the grammar then took unchecked: a raw control character inside the string.
        assert.doesNotThrow(() => JSON.parse(text.trim()), `temperature ${temperature}: ${JSON.stringify(text)}`);
        sequence.dispose();
      }
    } finally {
      await context.dispose();
    }
  });
});
