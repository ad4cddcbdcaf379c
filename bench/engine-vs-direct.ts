/**
 * In-process A/B: the EmbeddedEngine's generation loop against the raw
 * node-llama-cpp loop on the same model, same context shape, same prompt and
 * seeds, alternating rounds. Isolates the engine's own per-token cost from HTTP.
 * Usage: node dist/bench/engine-vs-direct.js [--threads N] [--tokens N] [--rounds N]
 * (run engine-throughput.js once first: it generates the benchmark model)
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, resolveChatWrapper } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { BENCH_LLAMA } from "../test/fixtures/gguf/random-llama.js";

const { values } = parseArgs({
  options: { threads: { type: "string", default: "1" }, tokens: { type: "string", default: "256" }, rounds: { type: "string", default: "3" } },
});
const threads = Number(values.threads);
const tokens = Number(values.tokens);
const modelPath = join(tmpdir(), "alveare-bench", `llama-${BENCH_LLAMA.layers}x${BENCH_LLAMA.embedding}-q8_0.gguf`);

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
const model = await llama.loadModel({ modelPath });
const direct = await model.createContext({ contextSize: 1024, sequences: 8, threads });
const engine = new EmbeddedEngine({
  name: "bench",
  model,
  context: await model.createContext({ contextSize: 1024, sequences: 8, threads }),
  grammars: new GrammarCache(llama),
  maxQueue: 4,
});
const messages = [
  { role: "system" as const, content: "You are helpful." },
  { role: "user" as const, content: "Tell me about revenue." },
];
const prompt = resolveChatWrapper(model)
  .generateContextState({
    chatHistory: [
      { type: "system", text: "You are helpful." },
      { type: "user", text: "Tell me about revenue." },
      { type: "model", response: [] },
    ],
  })
  .contextText.tokenize(model.tokenizer);
const sequence = direct.getSequence();

process.stdout.write(`| round | direct tok/s | engine tok/s | engine / direct |\n|---|---|---|---|\n`);
for (let round = 0; round < Number(values.rounds); round++) {
  let started = performance.now();
  let n = 0;
  const keep = Math.min(sequence.compareContextTokens(prompt).firstDifferentIndex, prompt.length - 1);
  await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
  for await (const _ of sequence.evaluate(prompt.slice(keep), { temperature: 0.7, topP: 1, seed: round })) if (++n >= tokens) break;
  const directRate = n / ((performance.now() - started) / 1000);
  started = performance.now();
  const r = await engine.generate({
    messages,
    maxTokens: tokens,
    temperature: 0.7,
    topP: 1,
    seed: round,
    stop: [],
    constraint: { type: "text" },
    signal: new AbortController().signal,
    onText: () => undefined,
  });
  const engineRate = r.completionTokens / ((performance.now() - started) / 1000);
  process.stdout.write(`| ${round} | ${directRate.toFixed(1)} | ${engineRate.toFixed(1)} | ${(engineRate / directRate).toFixed(2)}x |\n`);
}
await engine.close();
await direct.dispose();
await model.dispose();
await llama.dispose();
