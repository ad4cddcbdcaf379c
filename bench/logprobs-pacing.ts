/**
 * How a plain request fares beside one that asks for log-probabilities on the
 * same engine, with the DistributionPacer as shipped against a pacer that never
 * waits (the behaviour before it), alternating over rounds: the plain request's
 * time, and the reading request's tokens a second while they overlap.
 *
 *   node dist/bench/logprobs-pacing.js [--rounds 5] [--plain-tokens 200] [--threads 1]
 */
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { DistributionPacer } from "../src/engines/embedded/distribution-pacer.js";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import type { GenerationRequest } from "../src/engines/types.js";
import { benchModel, textRequest } from "./bench-model.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    "plain-tokens": { type: "string", default: "200" },
    threads: { type: "string", default: "1" },
  },
});
const plainTokens = Number(values["plain-tokens"]);

/** The pacer before it existed: a reading generation never waits. */
class NeverWaits extends DistributionPacer {
  override afterRead(): undefined {
    return undefined;
  }
}

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: await benchModel() });
const grammars = new GrammarCache(llama);

const request = (content: string, maxTokens: number, signal: AbortSignal, topLogprobs?: number): GenerationRequest =>
  textRequest(content, maxTokens, { signal, ...(topLogprobs === undefined ? {} : { topLogprobs }) });

interface Round {
  plainMs: number;
  plainAloneMs: number;
  readingTokensPerSecond: number;
}

/** The plain request alone, then beside a reading one that started first and is stopped when the plain one ends. */
async function round(pacer: DistributionPacer): Promise<Round> {
  const context = await model.createContext({ contextSize: 4096, sequences: 2, threads: Number(values.threads) });
  const engine = new EmbeddedEngine({ name: "pacing", model, context, grammars, maxQueue: 4, pacer });
  const never = new AbortController().signal;
  let started = performance.now();
  await engine.generate(request("tell me about the product", plainTokens, never));
  const plainAloneMs = performance.now() - started;
  const stop = new AbortController();
  let readingTokens = 0;
  const readingRequest = request("write a long story", 100_000, stop.signal, 5);
  readingRequest.onText = (_piece, detail) => void (readingTokens += detail?.logprobs?.length ?? 0);
  const reading = engine.generate(readingRequest);
  while (readingTokens < 3) await new Promise((resolve) => setTimeout(resolve, 1));
  const readingBefore = readingTokens;
  started = performance.now();
  await engine.generate(request("tell me about the product", plainTokens, never));
  const plainMs = performance.now() - started;
  const readingTokensPerSecond = ((readingTokens - readingBefore) * 1000) / plainMs;
  stop.abort();
  await reading;
  await engine.close();
  await context.dispose();
  return { plainMs, plainAloneMs, readingTokensPerSecond };
}

const sides = { paced: () => new DistributionPacer(), unpaced: () => new NeverWaits() };
const results: Record<keyof typeof sides, Round[]> = { paced: [], unpaced: [] };
for (let r = 0; r < Number(values.rounds); r++) {
  const order = (r % 2 === 0 ? ["paced", "unpaced"] : ["unpaced", "paced"]) as Array<keyof typeof sides>;
  for (const side of order) results[side].push(await round(sides[side]()));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const row = (side: keyof typeof sides, label: string): string => {
  const rs = results[side];
  return `| ${label} | ${median(rs.map((r) => r.plainAloneMs)).toFixed(0)} | ${median(rs.map((r) => r.plainMs)).toFixed(0)} | ${median(
    rs.map((r) => r.plainMs / r.plainAloneMs),
  ).toFixed(2)}× | ${median(rs.map((r) => r.readingTokensPerSecond)).toFixed(1)} |`;
};
process.stdout.write(
  `a ${plainTokens}-token plain request beside one with top_logprobs 5 on the other sequence, ${values.threads} thread(s), median of ${values.rounds} alternating rounds\n\n` +
    "| pacer | plain alone ms | plain beside the reading one ms | slowdown | reading one's tokens/s meanwhile |\n|---|---|---|---|---|\n" +
    `${row("paced", "DistributionPacer (shipped)")}\n${row("unpaced", "never waits (before)")}\n`,
);
