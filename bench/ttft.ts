/**
 * Time to first token when requests alternate between specialists (each with
 * its own long system prompt) against the same requests sent to one specialist
 * only (the warm case), at several system-prompt lengths, alternating rounds.
 * In process, through the runtime the server uses (LlamaRuntime → EmbeddedEngine).
 * Usage: node dist/bench/ttft.js [--threads N|auto] [--parallel N] [--specialists N]
 *        [--requests N] [--rounds N] [--lengths 100,500,1500] [--no-snapshots]
 */
import { parseArgs } from "node:util";
import type { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { LlamaRuntime } from "../src/engines/embedded/llama-runtime.js";
import type { ChatMessage } from "../src/engines/types.js";
import { benchModel } from "./bench-model.js";
import { createLogger } from "../src/logger.js";

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: "1" },
    parallel: { type: "string", default: "2" },
    specialists: { type: "string", default: "4" },
    requests: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    lengths: { type: "string", default: "100,500,1500" },
    "no-snapshots": { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
  },
});
const parallel = Number(values.parallel);
const specialistCount = Number(values.specialists);
const requestsPerCase = Number(values.requests);
const rounds = Number(values.rounds);
const lengths = values.lengths.split(",").map(Number);

const SENTENCES = [
  "Answer with the label only and nothing else.",
  "The user sends a product review; read it in full before you decide.",
  "If the text is about revenue, name the quarter and the year.",
  "Return valid json with a name and a value for every field you find.",
  "You are careful, brief and honest; say so when you do not know.",
  "Example: the best purchase ever, I love this product. Answer: positive.",
  "Example: bad code that does not return the data. Answer: negative.",
];

/** A system prompt of about `tokens` tokens, distinct per specialist from its first sentence on. */
function systemPrompt(engine: EmbeddedEngine, specialist: number, tokens: number): string {
  let text = `You are specialist number ${specialist + 1} of ${specialistCount}.`;
  for (let i = 0; ; i++) {
    const next = `${text} ${SENTENCES[(i + specialist) % SENTENCES.length]}`;
    if (engine.countPromptTokens([{ role: "system", content: next }]) > tokens) return text;
    text = next;
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

interface Sample {
  ms: number;
  promptTokens: number;
  evaluated: number;
}

const OPENINGS = ["Hello", "Quick", "Team", "Today", "Now", "Boss", "Why", "Data", "Given", "Kindly", "Urgent", "Monday"];
let requestNumber = 0;
/** One request's time to first token: the whole generate() of a single token. */
async function timeRequest(engine: EmbeddedEngine, system: string): Promise<Sample> {
  requestNumber++;
  const messages: ChatMessage[] = [
    { role: "system", content: system },
    // Users' messages share no opening words, so the warm case cannot reuse more than the system prefix either.
    {
      role: "user",
      content: `${OPENINGS[requestNumber % OPENINGS.length]} ${requestNumber}: please summarise the revenue data of this quarter for the team.`,
    },
  ];
  const evaluatedBefore = engine.promptCache.promptTokensEvaluated;
  const started = performance.now();
  const result = await engine.generate({
    messages,
    maxTokens: 1,
    temperature: 0,
    topP: 1,
    seed: 1,
    stop: [],
    constraint: { type: "text" },
    signal: new AbortController().signal,
  });
  return {
    ms: performance.now() - started,
    promptTokens: result.promptTokens,
    evaluated: engine.promptCache.promptTokensEvaluated - evaluatedBefore,
  };
}

const logger = createLogger(values.verbose ? "info" : "warn");
const runtime = await LlamaRuntime.create({
  parallel,
  queue: 64,
  threads: values.threads === "auto" ? "auto" : Number(values.threads),
  logger,
  ...(values["no-snapshots"] ? { prefixSnapshotBytes: 0 } : {}),
});
const engine = await runtime.engine({ modelPath: await benchModel(), contextSize: Math.max(...lengths) + 256 });

process.stdout.write(
  `threads ${values.threads}, parallel ${parallel}, ${specialistCount} specialists, ${requestsPerCase} requests per case, ${rounds} rounds, snapshots ${values["no-snapshots"] ? "off" : "on"}\n\n`,
);
process.stdout.write(
  "| system prompt | prompt tokens | first use (ms) | warm TTFT ms | alternating TTFT ms | alternating / warm | warm prompt tok/s | alternating prompt tok/s | evaluated per request (warm / alt) |\n|---|---|---|---|---|---|---|---|---|\n",
);
for (const length of lengths) {
  const systems = Array.from({ length: specialistCount }, (_, i) => systemPrompt(engine, i, length));
  // First use of each specialist: the one-time evaluation (and snapshot) of its prefix, reported apart.
  const firstUse: number[] = [];
  for (const system of systems) firstUse.push((await timeRequest(engine, system)).ms);
  const warm: Sample[] = [];
  const alternating: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    const runWarm = async (): Promise<void> => {
      for (let i = 0; i < requestsPerCase; i++) warm.push(await timeRequest(engine, systems[0]!));
    };
    const runAlternating = async (): Promise<void> => {
      for (let i = 0; i < requestsPerCase; i++) alternating.push(await timeRequest(engine, systems[i % systems.length]!));
    };
    // Alternate which case goes first, so neither always inherits the other's cache state.
    if (round % 2 === 0) {
      await runWarm();
      await runAlternating();
    } else {
      await runAlternating();
      await runWarm();
    }
  }
  const warmMs = median(warm.map((s) => s.ms));
  const altMs = median(alternating.map((s) => s.ms));
  const promptTokens = median(warm.map((s) => s.promptTokens));
  process.stdout.write(
    `| ${length} | ${promptTokens} | ${median(firstUse).toFixed(0)} | ${warmMs.toFixed(1)} | ${altMs.toFixed(1)} | ${(altMs / warmMs).toFixed(2)}× | ` +
      `${(promptTokens / (warmMs / 1000)).toFixed(0)} | ${(median(alternating.map((s) => s.promptTokens)) / (altMs / 1000)).toFixed(0)} | ` +
      `${median(warm.map((s) => s.evaluated))} / ${median(alternating.map((s) => s.evaluated))} |\n`,
  );
}
const stats = engine.promptCache;
process.stdout.write(
  `\nsnapshot builds ${stats.snapshotBuilds}, restores ${stats.snapshotRestores}, sequence hits ${stats.sequenceHits}, prompt tokens evaluated ${stats.promptTokensEvaluated}\n`,
);
await runtime.close();
