import assert from "node:assert/strict";
import { copyFileSync, existsSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { engineIdentity } from "../src/engines/embedded/llama-runtime.js";
import { PrefixSnapshotStore, type SnapshotTarget } from "../src/engines/embedded/prefix-snapshots.js";
import { PromptAbandoned } from "../src/engines/embedded/prompt-abandoned.js";
import { SequencePool } from "../src/engines/embedded/sequence-pool.js";
import type { ChatMessage } from "../src/engines/types.js";
import { TINY_LLAMA, writeRandomLlama, writeRandomLora } from "./fixtures/gguf/random-llama.js";
import { createLogger } from "../src/logger.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { LogCapture, tempDir, tinyModel } from "./helpers/fixtures.js";

/**
 * Real specialists carry instructions and few-shot examples after their task
 * line; the defaults' one-liners are padded with such a block so that every
 * specialist's prefix is long enough to be snapshotted.
 */
const EXAMPLES = Array.from(
  { length: 6 },
  (_, i) =>
    `Example ${i + 1}: the user asks about the quarter and the revenue; you answer with the summary, the data and the value, and nothing else.`,
).join("\n");

const SPECIALISTS = defaultSpecialists().map((s) => ({ id: s.id, system: `${s.systemPrompt}\n\n${EXAMPLES}` }));

const conversation = (system: string, user: string): ChatMessage[] => [
  { role: "system", content: system },
  { role: "user", content: user },
];

/**
 * Largest difference between two next-token distributions in log-probability
 * (logits up to a constant), over the whole vocabulary: a random model's
 * distribution is nearly flat, so probabilities themselves would hide differences.
 */
function maxDifference(a: Map<Token, number>, b: Map<Token, number>): number {
  assert.equal(a.size, b.size, "both distributions cover the same tokens");
  let worst = 0;
  for (const [token, p] of a) worst = Math.max(worst, Math.abs(Math.log(p) - Math.log(b.get(token) ?? 0)));
  return worst;
}

/** Batch size changes the CPU kernels' summation order, so a one-batch evaluation agrees to a tolerance, not bitwise. */
const TOLERANCE = 5e-3;
/**
 * Evaluated in the same two steps the numbers nearly agree bitwise; a snapshot
 * built on a sequence that already held the template's first tokens adds a third
 * step, hence not exactly.
 */
const SAME_STEPS = 5e-4;

let llama: Llama;
const logs = new LogCapture();
const logger = createLogger("info", logs);
const engines: EmbeddedEngine[] = [];
const stores: PrefixSnapshotStore[] = [];

async function engineOn(
  model: LlamaModel,
  options: {
    parallel?: number;
    store?: PrefixSnapshotStore;
    identity?: string;
    lora?: { path: string; scale: number };
    rememberedPrefixTokens?: number;
  } = {},
): Promise<EmbeddedEngine> {
  const context = await model.createContext({
    contextSize: 1024,
    sequences: options.parallel ?? 1,
    threads: 1,
    ...(options.lora ? { lora: { adapters: [{ filePath: options.lora.path, scale: options.lora.scale }] } } : {}),
  });
  const engine = new EmbeddedEngine({
    name: "test",
    model,
    context,
    grammars: new GrammarCache(llama),
    maxQueue: 8,
    snapshots: options.store,
    identity: options.identity,
    rememberedPrefixTokens: options.rememberedPrefixTokens,
  });
  engines.push(engine);
  return engine;
}

function newStore(budget = 64 * 1024 * 1024): PrefixSnapshotStore {
  const store = new PrefixSnapshotStore(budget, logger);
  stores.push(store);
  return store;
}

/**
 * The distribution node-llama-cpp computes for `tokens` on a brand-new context:
 * in one evaluation (`split` 0), or evaluating the first `split` tokens and then
 * the rest, as the engine does after a snapshot.
 */
async function reference(model: LlamaModel, tokens: Token[], split = 0, lora?: { path: string; scale: number }): Promise<Map<Token, number>> {
  const context = await model.createContext({
    contextSize: 1024,
    sequences: 1,
    threads: 1,
    ...(lora ? { lora: { adapters: [{ filePath: lora.path, scale: lora.scale }] } } : {}),
  });
  try {
    const sequence = context.getSequence();
    if (split > 0) await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, split));
    const rest = tokens.slice(split);
    const last = rest.length - 1;
    const output = await sequence.controlledEvaluate(
      rest.map((token, i): ControlledEvaluateInputItem =>
        i === last ? [token, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }] : token,
      ),
    );
    const probabilities = output[last]?.next.probabilities;
    assert.ok(probabilities !== undefined);
    return probabilities;
  } finally {
    await context.dispose();
  }
}

/**
 * Checks a distribution the engine computed after restoring `prefixLength`
 * tokens against node-llama-cpp on a fresh context: equal (to float noise) when
 * evaluated in the same two steps, so the restored KV cache is exactly the
 * evaluated one; close when evaluated in one batch.
 */
async function assertMatchesFresh(
  label: string,
  model: LlamaModel,
  tokens: Token[],
  prefixLength: number,
  restored: Map<Token, number>,
  lora?: { path: string; scale: number },
): Promise<void> {
  const sameSteps = maxDifference(restored, await reference(model, tokens, prefixLength, lora));
  assert.ok(sameSteps <= SAME_STEPS, `${label}: differs from the same evaluation done fresh by ${sameSteps}`);
  const oneBatch = maxDifference(restored, await reference(model, tokens, 0, lora));
  assert.ok(oneBatch <= TOLERANCE, `${label}: differs from a fresh one-batch evaluation by ${oneBatch}`);
}

before(async () => {
  llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
});

after(async () => {
  for (const engine of engines) await engine.close();
  for (const store of stores) store.close();
  await llama.dispose();
});

describe("system-prefix snapshots", () => {
  it("for every specialist, logits after a restored prefix match a fresh evaluation, and only the suffix is evaluated", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const store = newStore();
    // One sequence: every change of specialist must bring that specialist's prefix back.
    const engine = await engineOn(model, { store, identity: "tiny" });
    for (const s of SPECIALISTS) await engine.nextTokenProbabilities(conversation(s.system, "hello world"));
    assert.equal(engine.promptCache.snapshotBuilds, SPECIALISTS.length, "each prefix is evaluated once and saved");
    assert.equal(store.size, SPECIALISTS.length);

    const distributions: Array<Map<Token, number>> = [];
    for (const s of SPECIALISTS) {
      const messages = conversation(s.system, "please summarise the revenue data of this quarter");
      const prefixLength = engine.snapshotPrefixLength(messages);
      assert.ok(prefixLength > model.tokenize(s.system).length, `${s.id}: the snapshot covers the whole system prompt`);
      const counters = engine.promptCache;
      const restored = await engine.nextTokenProbabilities(messages);
      const now = engine.promptCache;
      assert.equal(now.snapshotRestores, counters.snapshotRestores + 1, `${s.id}: restored from its snapshot`);
      assert.equal(now.snapshotBuilds, counters.snapshotBuilds, `${s.id}: not rebuilt`);
      assert.equal(
        now.promptTokensEvaluated - counters.promptTokensEvaluated,
        engine.countPromptTokens(messages) - prefixLength,
        `${s.id}: only the suffix is evaluated`,
      );
      await assertMatchesFresh(s.id, model, engine.promptTokens(messages), prefixLength, restored);
      distributions.push(restored);
    }
    // The comparison can tell prompts apart: two specialists' distributions differ by far more than the tolerance.
    const apart = maxDifference(distributions[0]!, distributions[1]!);
    assert.ok(apart > 5 * TOLERANCE, `different prompts give measurably different distributions (${apart})`);
    const saved = logs.records().filter((r) => r.msg === "prefix snapshot saved");
    assert.ok(
      saved.length >= SPECIALISTS.length &&
        saved.every((r) => typeof r.bytes === "number" && (r.bytes as number) > 0 && typeof r.totalBytes === "number"),
    );
  });

  it("takes the free sequence that already holds the prompt's prefix, without loading or evaluating it", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const engine = await engineOn(model, { parallel: 2, store: newStore(), identity: "tiny" });
    const [a, b] = SPECIALISTS;
    await engine.nextTokenProbabilities(conversation(a!.system, "hello world"));
    await engine.nextTokenProbabilities(conversation(b!.system, "hello world"));
    // The sequence `b` just released is the most recently freed; `a`'s cache is in the other one.
    const messages = conversation(a!.system, "thank you");
    const counters = engine.promptCache;
    await engine.nextTokenProbabilities(messages);
    const now = engine.promptCache;
    assert.equal(now.sequenceHits, counters.sequenceHits + 1);
    assert.equal(now.snapshotRestores, counters.snapshotRestores);
    assert.ok(
      now.promptTokensEvaluated - counters.promptTokensEvaluated <= engine.countPromptTokens(messages) - engine.snapshotPrefixLength(messages),
    );
  });

  it("never reuses a snapshot after the system prompt changes", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const engine = await engineOn(model, { store: newStore(), identity: "tiny" });
    const original = SPECIALISTS[2]!.system;
    const changed = original.replace(/nothing else\.$/, "nothing more.");
    assert.notEqual(changed, original);
    await engine.nextTokenProbabilities(conversation(original, "hello world"));
    await engine.nextTokenProbabilities(conversation(SPECIALISTS[3]!.system, "hello world"));
    const messages = conversation(changed, "hello world");
    const counters = engine.promptCache;
    const probabilities = await engine.nextTokenProbabilities(messages);
    assert.equal(engine.promptCache.snapshotRestores, counters.snapshotRestores, "the old prompt's snapshot is not loaded");
    assert.equal(engine.promptCache.snapshotBuilds, counters.snapshotBuilds + 1);
    await assertMatchesFresh("changed prompt", model, engine.promptTokens(messages), engine.snapshotPrefixLength(messages), probabilities);
  });

  it("loads no snapshot for a request aborted before its prefix is placed: metered as without snapshots, with what its sequence held", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const [a, b] = SPECIALISTS;
    const metered: number[] = [];
    for (const store of [newStore(), undefined]) {
      // One sequence: after `b`'s request it holds `b`'s prompt, and `a`'s prefix must come back from its snapshot.
      const engine = await engineOn(model, { store, identity: "tiny" });
      const ask = (system: string, signal: AbortSignal, onStarted?: () => void) =>
        engine.generate({
          messages: conversation(system, "hello world"),
          maxTokens: 2,
          temperature: 0,
          topP: 1,
          stop: [],
          constraint: { type: "text" },
          signal,
          onStarted,
        });
      await ask(a!.system, new AbortController().signal);
      await ask(b!.system, new AbortController().signal);
      const counters = engine.promptCache;
      const leaving = new AbortController();
      // The client leaves once the request holds its sequence, before anything of its prompt is placed there.
      const cut = await ask(a!.system, leaving.signal, () => leaving.abort());
      assert.deepEqual([cut.aborted, cut.completionTokens], [true, 0]);
      assert.equal(engine.promptCache.snapshotRestores, counters.snapshotRestores, "no snapshot is loaded for a request already gone");
      metered.push(cut.promptTokens);
    }
    // What the sequence held of `a`'s prompt (the template's and the prompts' shared start), not `a`'s whole prefix.
    const engine = engines.at(-1)!;
    const held = engine.promptTokens(conversation(a!.system, "hello world"));
    const other = engine.promptTokens(conversation(b!.system, "hello world"));
    let shared = 0;
    while (held[shared] === other[shared]) shared++;
    assert.deepEqual(metered, [shared, shared]);
    assert.ok(shared < engine.snapshotPrefixLength(conversation(a!.system, "hello world")));
  });

  it("never reuses a snapshot made with another model file at the same path", async () => {
    const dir = tempDir();
    const path = join(dir, "model.gguf");
    copyFileSync(await tinyModel(), path);
    const store = newStore();
    const messages = conversation(SPECIALISTS[1]!.system, "hello world");
    const first = await engineOn(await llama.loadModel({ modelPath: path, gpuLayers: 0 }), { store, identity: engineIdentity(path) });
    await first.nextTokenProbabilities(messages);
    assert.equal(store.size, 1);

    // Same path and shape, different weights: the file is replaced (later mtime), as an upgrade would.
    await writeRandomLlama(path, { ...TINY_LLAMA, seed: 99 });
    const later = new Date(statSync(path).mtimeMs + 10_000);
    utimesSync(path, later, later);
    const replaced = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const second = await engineOn(replaced, { store, identity: engineIdentity(path) });
    const probabilities = await second.nextTokenProbabilities(messages);
    assert.equal(second.promptCache.snapshotRestores, 0, "the old model's snapshot is not loaded");
    assert.equal(second.promptCache.snapshotBuilds, 1);
    await assertMatchesFresh("replaced model", replaced, second.promptTokens(messages), second.snapshotPrefixLength(messages), probabilities);

    // Control: an engine with the same identity does load the snapshot, so the key is what kept the old one out.
    const third = await engineOn(replaced, { store, identity: engineIdentity(path) });
    await third.nextTokenProbabilities(messages);
    assert.equal(third.promptCache.snapshotRestores, 1);
  });

  it("never reuses a snapshot made under another adapter or adapter scale", async () => {
    const adapter = join(tempDir(), "lora.gguf");
    await writeRandomLora(adapter, { base: TINY_LLAMA, alpha: 64 });
    const modelPath = await tinyModel();
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const store = newStore();
    const messages = conversation(SPECIALISTS[4]!.system, "hello world");
    const plain = await engineOn(model, { store, identity: engineIdentity(modelPath) });
    await plain.nextTokenProbabilities(messages);
    for (const scale of [1, 0.5]) {
      const lora = { path: adapter, scale };
      const tuned = await engineOn(model, { store, identity: engineIdentity(modelPath, lora), lora });
      const probabilities = await tuned.nextTokenProbabilities(messages);
      assert.equal(tuned.promptCache.snapshotRestores, 0, `scale ${scale}: no other adapter's snapshot is loaded`);
      assert.equal(tuned.promptCache.snapshotBuilds, 1);
      await assertMatchesFresh(`scale ${scale}`, model, tuned.promptTokens(messages), tuned.snapshotPrefixLength(messages), probabilities, lora);
    }
    assert.equal(store.size, 3);
  });
});

describe("remembered system prefixes", () => {
  it("are not computed or kept for a prompt that cannot fit the context, however long its system message", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const engine = await engineOn(model, { store: newStore(), identity: "tiny" });
    engine.countPromptTokens(conversation(SPECIALISTS[0]!.system, "hello"));
    const before = engine.rememberedPrefixes;
    assert.equal(before.count, 1);
    for (let i = 0; i < 5; i++) {
      const huge = conversation(`${"0123456789".repeat(2_000)} ${i}`, "hello");
      assert.ok(engine.countPromptTokens(huge) > 1024, "longer than the context");
    }
    assert.deepEqual(engine.rememberedPrefixes, before);
  });

  it("hold at most their token budget, whatever the callers send", async () => {
    const model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
    const engine = await engineOn(model, { identity: "tiny", rememberedPrefixTokens: 600 });
    let largest = 0;
    for (let i = 0; i < 40; i++) {
      engine.countPromptTokens(conversation(`Answer in the style of writer number ${i}. ${"Be brief and exact. ".repeat(20)}`, "hello"));
      // A specialist's own prompt, used between the callers' ones, stays remembered: least recently used out first.
      const before = engine.rememberedPrefixes.count;
      engine.countPromptTokens(conversation(SPECIALISTS[0]!.system.slice(0, 200), "hello"));
      if (i > 0) assert.equal(engine.rememberedPrefixes.count, before, `round ${i}: the specialist's prompt was still remembered`);
      const { tokens } = engine.rememberedPrefixes;
      assert.ok(tokens <= 600, `${tokens} tokens remembered`);
      largest = Math.max(largest, tokens);
    }
    assert.ok(largest > 400, "the budget is used");
  });
});

describe("prefix snapshot store", () => {
  /** A target whose "state" is a file of `bytes` bytes: enough to exercise the store's bookkeeping. */
  const target = (bytes: number, loaded: string[] = []): SnapshotTarget => ({
    load: (path) => {
      if (!existsSync(path)) throw new Error("missing");
      loaded.push(path);
      return Promise.resolve();
    },
    evaluate: () => Promise.resolve(),
    save: (path) => {
      writeFileSync(path, Buffer.alloc(bytes));
      return Promise.resolve(bytes);
    },
  });

  it("keeps snapshots in a private directory, within its byte budget, least recently used out first, and removes them at close", async () => {
    const store = new PrefixSnapshotStore(250, logger);
    assert.equal(statSync(store.directory).mode & 0o777, 0o700);
    assert.equal(await store.place("a", 10, target(100)), "built");
    assert.equal(await store.place("b", 10, target(100)), "built");
    assert.equal(await store.place("a", 10, target(100)), "restored");
    assert.equal(await store.place("c", 10, target(100)), "built");
    assert.equal(store.totalBytes, 200);
    assert.ok(store.has("a") && store.has("c") && !store.has("b"), "b was the least recently used");
    let saves = 0;
    const huge: SnapshotTarget = { ...target(1000), save: (path) => (saves++, target(1000).save(path)) };
    assert.equal(await store.place("huge", 10, huge), "evaluated");
    assert.ok(!store.has("huge"), "a snapshot larger than the budget is not kept");
    assert.equal(await store.place("huge", 10, huge), "evaluated");
    assert.equal(saves, 1, "nor saved again only to be dropped");
    assert.ok(store.has("a") && store.has("c"));
    store.close();
    assert.equal(existsSync(store.directory), false);
  });

  it("evicts pinned snapshots (the specialists' own) only after every other, and only when they alone overflow", async () => {
    const store = new PrefixSnapshotStore(250, logger);
    store.pin("specialist");
    assert.equal(await store.place("specialist", 10, target(100)), "built");
    for (const caller of ["one", "two", "three"]) assert.equal(await store.place(caller, 10, target(100)), "built");
    assert.ok(store.has("specialist"), "callers' prompts did not flush the pinned one, though it is the least recently used");
    assert.ok(store.has("three") && !store.has("one") && !store.has("two"));
    store.pin("other");
    assert.equal(await store.place("other", 10, target(100)), "built");
    assert.ok(store.has("specialist") && store.has("other") && !store.has("three"), "unpinned out first");
    store.pin("third");
    assert.equal(await store.place("third", 10, target(100)), "built");
    assert.ok(!store.has("specialist") && store.has("other") && store.has("third"), "pinned ones alone over budget: least recently used out");
    store.close();
  });

  it("a load that fails leaves the file to the loads still reading it, and deletes it after the last", async () => {
    const store = newStore();
    assert.equal(await store.place("k", 10, target(10)), "built");
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const paths: string[] = [];
    // The first load waits, holding the file; a second one fails while it does.
    const slow = store.place("k", 10, {
      ...target(10),
      load: async (path) => {
        paths.push(path);
        await held;
        if (!existsSync(path)) throw new Error("the file went while it was being read");
      },
    });
    const failing = store.place("k", 10, { ...target(10), load: () => Promise.reject(new Error("this load failed")) });
    assert.equal(await failing, "built", "a failed load falls back to evaluating the prefix");
    release();
    assert.equal(await slow, "restored");
    assert.equal(paths.length, 1, "the other load found its file the first time (not only after a rebuild)");
    assert.equal(existsSync(paths[0]!), false, "the removed snapshot's file is gone once no load reads it");
  });

  it("lets a request waiting for another's build of its prefix leave at once when its client does; the build goes on", async () => {
    const store = newStore();
    let finishBuild!: () => void;
    const building = store.place("k", 10, { ...target(10), evaluate: () => new Promise<void>((resolve) => (finishBuild = resolve)) });
    const leaving = new AbortController();
    const waiting = store.place("k", 10, { ...target(10), signal: leaving.signal });
    const staying = store.place("k", 10, { ...target(10), signal: new AbortController().signal });
    leaving.abort();
    // Without the signal the wait would last the whole build: its sequence idle, held from other requests.
    const left = await Promise.race([
      waiting.then(
        () => "placed",
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(() => resolve("still waiting"), 500)),
    ]);
    assert.ok(left instanceof PromptAbandoned, String(left));
    finishBuild();
    assert.equal(await building, "built");
    assert.equal(await staying, "restored");
  });

  it("builds a prefix once when several requests want it at the same time", async () => {
    const store = newStore();
    const loaded: string[] = [];
    const results = await Promise.all([
      store.place("k", 10, target(10, loaded)),
      store.place("k", 10, target(10, loaded)),
      store.place("k", 10, target(10, loaded)),
    ]);
    assert.deepEqual(results.sort(), ["built", "restored", "restored"]);
    assert.equal(loaded.length, 2);
  });
});

describe("sequence pool", () => {
  it("lets a caller pick among free items, and a waiter gets the next released item in arrival order", async () => {
    const pool = new SequencePool(["x", "y", "z"], 4);
    const signal = new AbortController().signal;
    assert.equal(await pool.acquire(signal, (free) => free.indexOf("y")), "y");
    assert.equal(await pool.acquire(signal), "z", "without a preference, the most recently released");
    assert.equal(await pool.acquire(signal, () => 0), "x");
    const first = pool.acquire(signal, () => 0);
    const second = pool.acquire(signal);
    pool.release("z");
    pool.release("x");
    assert.equal(await first, "z");
    assert.equal(await second, "x");
  });
});
