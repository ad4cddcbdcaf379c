/**
 * How a stream fares while another request's long prompt is evaluated on the
 * same engine: the gaps between the stream's pieces during that prompt, and the
 * prompt's time, with the engine's prompt evaluated in chunks of each size given
 * (`promptChunkTokens`; the context's batch stays llama.cpp's 512). Sizes
 * alternate over rounds.
 *
 *   node dist/bench/prefill-fairness.js [--chunks 512,128] [--rounds 2] [--prompt-tokens 1500] [--threads 2]
 */
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import type { GenerationRequest } from "../src/engines/types.js";
import { benchModel, textRequest } from "./bench-model.js";

const { values } = parseArgs({
  options: {
    chunks: { type: "string", default: "512,128" },
    rounds: { type: "string", default: "2" },
    "prompt-tokens": { type: "string", default: "1500" },
    threads: { type: "string", default: "2" },
  },
});
const chunks = values.chunks.split(",").map(Number);

const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: await benchModel() });
const long = model.detokenize(
  model.tokenize("the product and the revenue of the quarter grew. ".repeat(400)).slice(0, Number(values["prompt-tokens"])),
);

const request = (content: string, maxTokens: number, onText?: () => void): GenerationRequest =>
  textRequest(content, maxTokens, onText === undefined ? {} : { onText });

interface Round {
  promptMs: number;
  gaps: number[];
}

/** A stream of 400 tokens; after its 20th piece, the long prompt arrives on the other sequence. */
async function round(chunk: number): Promise<Round> {
  const context = await model.createContext({ contextSize: 4096, sequences: 2, threads: Number(values.threads) });
  const engine = new EmbeddedEngine({ name: "fairness", model, context, grammars: new GrammarCache(llama), maxQueue: 4, promptChunkTokens: chunk });
  const pieces: number[] = [];
  let prompt: Promise<void> | undefined;
  let promptStart = 0;
  let promptEnd = 0;
  await engine.generate(
    request("tell me about the product", 400, () => {
      pieces.push(performance.now());
      if (pieces.length !== 20) return;
      promptStart = performance.now();
      prompt = engine.generate(request(long, 1)).then(() => void (promptEnd = performance.now()));
    }),
  );
  await prompt;
  await engine.close();
  await context.dispose();
  const gaps: number[] = [];
  for (let i = 1; i < pieces.length; i++) if (pieces[i]! > promptStart && pieces[i - 1]! < promptEnd) gaps.push(pieces[i]! - pieces[i - 1]!);
  return { promptMs: promptEnd - promptStart, gaps };
}

const results = new Map<number, Round[]>(chunks.map((c) => [c, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const chunk of r % 2 === 0 ? chunks : [...chunks].reverse()) results.get(chunk)!.push(await round(chunk));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
process.stdout.write(
  `a 400-token stream while a ${values["prompt-tokens"]}-token prompt arrives on the other sequence, ${values.threads} threads, ${values.rounds} rounds each\n\n`,
);
process.stdout.write(
  "| prompt chunk | prompt ms (median) | stream pieces during it | stream's longest gap ms | stream's median gap ms |\n|---|---|---|---|---|\n",
);
for (const [chunk, rounds] of results) {
  const gaps = rounds.flatMap((x) => x.gaps);
  process.stdout.write(
    `| ${chunk} | ${median(rounds.map((x) => x.promptMs)).toFixed(0)} | ${gaps.length} | ${Math.max(...gaps).toFixed(0)} | ${median(gaps).toFixed(0)} |\n`,
  );
}
await model.dispose();
