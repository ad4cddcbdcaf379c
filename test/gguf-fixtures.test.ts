import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getLlama, readGgufFileInfo, type Llama } from "node-llama-cpp";
import { BENCH_LLAMA, buildVocabulary, parameterCount, TINY_LLAMA, writeRandomLlama } from "./fixtures/gguf/random-llama.js";
import { postJson, startTestServer, tempDir } from "./helpers/fixtures.js";

describe("GGUF fixture generator", () => {
  let llama: Llama;
  before(async () => {
    llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  });
  after(async () => {
    await llama.dispose();
  });

  it("writes a tiny model in milliseconds that llama.cpp loads and generates from", async () => {
    const path = join(tempDir(), "tiny.gguf");
    const started = performance.now();
    await writeRandomLlama(path, TINY_LLAMA);
    assert.ok(performance.now() - started < 2000);
    const model = await llama.loadModel({ modelPath: path });
    try {
      assert.equal(model.fileInfo.metadata.general.architecture, "llama");
      assert.equal(model.tokenizer("hello").length > 0, true);
      // Any UTF-8 text round-trips through the byte-fallback tokenizer.
      const text = "I love this product! Best purchase ever. é 你好 🐝";
      assert.equal(model.detokenize(model.tokenize(text)), text);
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      const sequence = context.getSequence();
      const out = [];
      for await (const token of sequence.evaluate(model.tokenize("hello world"), { temperature: 0.8, seed: 3 })) {
        out.push(token);
        if (out.length === 16) break;
      }
      assert.equal(out.length, 16);
      await context.dispose();
    } finally {
      await model.dispose();
    }
  });

  it("writes any shape, recorded in the metadata, with the tensors of that shape", async () => {
    const shape = { layers: 3, embedding: 96, heads: 6, kvHeads: 2, feedForward: 160, vocabulary: 700 };
    const path = join(tempDir(), "shape.gguf");
    await writeRandomLlama(path, shape);
    const info = await readGgufFileInfo(path);
    const md = info.metadata as unknown as { llama: Record<string, unknown> & { attention: Record<string, unknown> } };
    assert.equal(md.llama.block_count, 3);
    assert.equal(md.llama.embedding_length, 96);
    assert.equal(md.llama.feed_forward_length, 160);
    assert.equal(md.llama.attention.head_count, 6);
    assert.equal(md.llama.attention.head_count_kv, 2);
    const elements = (info.fullTensorInfo ?? []).reduce((n, t) => n + t.dimensions.reduce<number>((a, d) => a * Number(d), 1), 0);
    assert.equal(elements, parameterCount(shape));
    const model = await llama.loadModel({ modelPath: path });
    assert.equal(model.fileInfo.metadata.tokenizer.ggml.tokens.length, 700);
    await model.dispose();
  });

  it("sizes the benchmark shape at over 100M parameters", () => {
    assert.ok(parameterCount(BENCH_LLAMA) > 100_000_000);
  });

  it("writes Q8_0 weights at about a byte per parameter", async () => {
    const shape = { layers: 2, embedding: 128, heads: 4, feedForward: 256, vocabulary: 1024 };
    const path = join(tempDir(), "q8.gguf");
    await writeRandomLlama(path, { ...shape, weights: "q8_0" });
    const ratio = statSync(path).size / parameterCount(shape);
    assert.ok(ratio > 1.0 && ratio < 1.3, `bytes per parameter ${ratio}`);
    const model = await llama.loadModel({ modelPath: path });
    await model.dispose();
  });

  it("refuses a vocabulary too small for the byte-fallback tokens", () => {
    assert.throws(() => buildVocabulary(100), /at least/);
  });
});

describe("a GGUF made by other tools", () => {
  const shared = new URL("../../../shared/models/llama-2-tiny-random.gguf", import.meta.url).pathname;
  it("is served end to end when ../shared/models has it", { skip: !existsSync(shared) && "shared model not present" }, async () => {
    const server = await startTestServer({ models: { base: shared } });
    try {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "Hello" }],
        max_tokens: 8,
        temperature: 0,
      });
      assert.equal(r.status, 200);
      const usage = r.json.usage as { completion_tokens: number; prompt_tokens: number };
      assert.ok(usage.prompt_tokens > 0);
      assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 8);
      const classified = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: "great", temperature: 1 });
      assert.equal(classified.status, 200);
      assert.ok(["positive", "negative", "neutral"].includes(classified.json.result as string));
    } finally {
      await server.close();
    }
  });
});
