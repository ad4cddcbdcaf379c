import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { PrefixSnapshotStore } from "../src/engines/embedded/prefix-snapshots.js";
import type { ChatMessage, GenerationRequest } from "../src/engines/types.js";
import { createLogger } from "../src/logger.js";
import { TINY_LLAMA, writeRandomLlama } from "./fixtures/gguf/random-llama.js";
import { LogCapture, tempDir } from "./helpers/fixtures.js";

/** Llama 3.1's chat format writes "Today Date: …" before the system prompt, in local time. */
const LLAMA_31_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"];
const SYSTEM = "You are a summarisation specialist. " + "Keep the key facts, figures, names and conclusions of the text. ".repeat(12);
const DAY_MS = 24 * 3600 * 1000;

/** `Date` as the process sees it, `shift` milliseconds on: the day can change without waiting for midnight. */
const RealDate = Date;
let shift = 0;
class ShiftedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + shift);
    else super(...(args as [string]));
  }
  static override now(): number {
    return RealDate.now() + shift;
  }
}

describe("a system prefix whose chat template writes today's date", () => {
  let llama: Llama;
  let model: LlamaModel;
  before(async () => {
    const path = join(tempDir(), "llama-3.1.gguf");
    await writeRandomLlama(path, { ...TINY_LLAMA, name: "Meta-Llama-3.1-8B-Instruct", chatTemplate: false, controlTokens: LLAMA_31_TOKENS });
    llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    globalThis.Date = ShiftedDate as DateConstructor;
  });
  after(async () => {
    globalThis.Date = RealDate;
    await model.dispose();
    await llama.dispose();
  });

  /** An engine of two sequences whose snapshot store holds `budget` bytes (1: no prefix is ever kept). */
  async function engineWith(budget: number): Promise<{ engine: EmbeddedEngine; store: PrefixSnapshotStore; close: () => Promise<void> }> {
    const context = await model.createContext({ contextSize: 2048, sequences: 2, threads: 1 });
    const store = new PrefixSnapshotStore(budget, createLogger("info", new LogCapture()));
    const engine = new EmbeddedEngine({
      name: "l31",
      model,
      context,
      grammars: new GrammarCache(llama),
      maxQueue: 4,
      snapshots: store,
      identity: "l31",
    });
    return {
      engine,
      store,
      close: async () => {
        await engine.close();
        store.close();
      },
    };
  }

  const ask = async (engine: EmbeddedEngine, user: string) => {
    const messages: ChatMessage[] = [
      { role: "system", content: SYSTEM },
      { role: "user", content: user },
    ];
    const before = engine.promptCache.promptTokensEvaluated;
    const request = { messages, maxTokens: 1, temperature: 0, topP: 1, stop: [], constraint: { type: "text" }, signal: new AbortController().signal };
    const result = await engine.generate(request as GenerationRequest);
    return { prompt: result.promptTokens, cached: result.cachedPromptTokens ?? 0, evaluated: engine.promptCache.promptTokensEvaluated - before };
  };

  it("is formatted again once the date changes: the next day's requests evaluate only their own turn", async () => {
    shift = 0;
    const { engine, close } = await engineWith(64 << 20);
    try {
      assert.notEqual(await engine.prefill([{ role: "system", content: SYSTEM }]), "none");
      const today = await ask(engine, "hello there");
      assert.ok(today.evaluated < 40, `today: ${JSON.stringify(today)}`);
      shift = DAY_MS;
      await ask(engine, "the first question of the day"); // builds the new day's prefix
      for (const user of ["a question about the revenue", "and one about the quarter"]) {
        const tomorrow = await ask(engine, user);
        assert.ok(tomorrow.evaluated < 40, `tomorrow: ${JSON.stringify(tomorrow)}`);
        assert.equal(tomorrow.cached, tomorrow.prompt - tomorrow.evaluated);
      }
    } finally {
      await close();
    }
  });

  it("never reports cached tokens below zero or above the prompt, a prefix evaluated anew each time included", async () => {
    shift = 0;
    const { engine, close } = await engineWith(1);
    try {
      await ask(engine, "hello there");
      shift = DAY_MS * 2;
      for (const user of ["a question about the revenue", "and one about the quarter"]) {
        const answer = await ask(engine, user);
        assert.ok(answer.cached >= 0 && answer.cached < answer.prompt, JSON.stringify(answer));
        assert.ok(answer.evaluated <= answer.prompt, `each token evaluated once: ${JSON.stringify(answer)}`);
      }
    } finally {
      await close();
    }
  });

  it("keeps the specialist's rebuilt prefix before callers' own system prompts, as it kept yesterday's", async () => {
    shift = 0;
    // One snapshot's size, to give the next store room for two and a half.
    const sizing = await engineWith(64 << 20);
    let oneSnapshot: number;
    try {
      await sizing.engine.prefill([{ role: "system", content: SYSTEM }]);
      oneSnapshot = sizing.store.totalBytes;
    } finally {
      await sizing.close();
    }
    assert.ok(oneSnapshot > 0);
    const { engine, store, close } = await engineWith(Math.floor(oneSnapshot * 2.5));
    try {
      assert.equal(await engine.prefill([{ role: "system", content: SYSTEM }]), "built");
      shift = DAY_MS * 3;
      await ask(engine, "the first question of the day"); // yesterday's snapshot and today's: two
      assert.equal(store.size, 2);
      // Callers' own system prompts of the same length: each new snapshot evicts one.
      for (const word of ["revenue", "forecast", "audience"]) {
        const other: ChatMessage[] = [
          { role: "system", content: SYSTEM.replaceAll("facts", word) },
          { role: "user", content: "hello there" },
        ];
        const request = {
          messages: other,
          maxTokens: 1,
          temperature: 0,
          topP: 1,
          stop: [],
          constraint: { type: "text" },
          signal: new AbortController().signal,
        };
        await engine.generate(request as GenerationRequest);
      }
      const again = await ask(engine, "and one about the quarter");
      assert.ok(again.evaluated < 40, `the specialist's prefix was evicted: ${JSON.stringify(again)}`);
    } finally {
      await close();
    }
  });
});
