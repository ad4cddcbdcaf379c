/**
 * A long prompt evaluated in one call against the same prompt evaluated one
 * chunk per call, as the embedded engine does (so that other streams go on and
 * an aborted request stops between chunks): the time and CPU each way,
 * alternating over rounds. The context's batch stays llama.cpp's 512.
 *
 *   node dist/bench/prompt-batches.js [--tokens 1500] [--chunk 128] [--rounds 6] [--threads 2]
 */
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { benchModel } from "./bench-model.js";

const { values } = parseArgs({
  options: {
    tokens: { type: "string", default: "1500" },
    chunk: { type: "string", default: "128" },
    rounds: { type: "string", default: "6" },
    threads: { type: "string", default: "2" },
  },
});
const promptLength = Number(values.tokens);
const chunk = Number(values.chunk);
const rounds = Number(values.rounds);

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: await benchModel() });
const context = await model.createContext({ contextSize: promptLength + 64, sequences: 1, threads: Number(values.threads) });
const sequence = context.getSequence();
const prompt = model.tokenize("the product and the revenue of the quarter grew. ".repeat(Math.ceil(promptLength / 8))).slice(0, promptLength);

interface Run {
  ms: number;
  cpuMs: number;
}

async function evaluate(seq: LlamaContextSequence, tokens: Token[], chunked: boolean): Promise<Run> {
  await seq.clearHistory();
  const started = performance.now();
  const cpu = process.cpuUsage();
  if (chunked) for (let at = 0; at < tokens.length; at += chunk) await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(at, at + chunk));
  else await seq.evaluateWithoutGeneratingNewTokens(tokens);
  const used = process.cpuUsage(cpu);
  return { ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runs: Record<"one call" | "one chunk per call", Run[]> = { "one call": [], "one chunk per call": [] };
await evaluate(sequence, prompt, false); // warm-up
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? ([false, true] as const) : ([true, false] as const);
  for (const chunked of order) runs[chunked ? "one chunk per call" : "one call"].push(await evaluate(sequence, prompt, chunked));
}

process.stdout.write(`${prompt.length}-token prompt, chunks of ${chunk}, ${values.threads} threads, median of ${rounds} alternating rounds\n\n`);
process.stdout.write("| evaluation | ms | CPU ms | per round ms |\n|---|---|---|---|\n");
for (const [name, list] of Object.entries(runs)) {
  process.stdout.write(
    `| ${name} | ${median(list.map((r) => r.ms)).toFixed(0)} | ${median(list.map((r) => r.cpuMs)).toFixed(0)} | ${list.map((r) => r.ms.toFixed(0)).join(" / ")} |\n`,
  );
}
const ratio = median(runs["one chunk per call"].map((r) => r.ms)) / median(runs["one call"].map((r) => r.ms));
process.stdout.write(`\none chunk per call / one call: ${ratio.toFixed(3)}x the time\n`);
await context.dispose();
await model.dispose();
