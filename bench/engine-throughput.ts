/**
 * Decoding throughput through the HTTP API against the same work driven directly
 * through node-llama-cpp, on a random-weight model of realistic shape, same
 * threads, same run. Usage: node dist/bench/engine-throughput.js [--threads N] [--tokens N]
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, resolveChatWrapper, type LlamaModel } from "node-llama-cpp";
import { BENCH_LLAMA, parameterCount } from "../test/fixtures/gguf/random-llama.js";
import { benchModel } from "./bench-model.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { benchKey } from "./bench-key.js";

const { values } = parseArgs({
  options: { threads: { type: "string", default: "1" }, tokens: { type: "string", default: "128" }, rounds: { type: "string", default: "3" } },
});
const threads = Number(values.threads);
const maxTokens = Number(values.tokens);
const rounds = Number(values.rounds);
const CONCURRENCY = [1, 2, 4, 8];
const PARALLEL = 8;
const USER_PROMPT = "Tell me about the quarterly revenue figures and what drove them.";
const SYSTEM_PROMPT = defaultSpecialists().find((s) => s.id === "chat")!.systemPrompt;

/** Aggregate completion tokens per second of `c` concurrent generations, best of `rounds`. */
async function measure(c: number, run: (i: number) => Promise<number>): Promise<number> {
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    const started = performance.now();
    const tokens = (await Promise.all(Array.from({ length: c }, (_, i) => run(r * 100 + i)))).reduce((a, b) => a + b, 0);
    best = Math.max(best, tokens / ((performance.now() - started) / 1000));
  }
  return best;
}

async function direct(modelPath: string): Promise<number[]> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never });
  const model: LlamaModel = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 1024, sequences: PARALLEL, threads });
  const sequences = Array.from({ length: PARALLEL }, () => context.getSequence());
  const wrapper = resolveChatWrapper(model);
  const prompt = wrapper
    .generateContextState({
      chatHistory: [
        { type: "system", text: SYSTEM_PROMPT },
        { type: "user", text: USER_PROMPT },
        { type: "model", response: [] },
      ],
    })
    .contextText.tokenize(model.tokenizer);
  const results: number[] = [];
  for (const c of CONCURRENCY) {
    results.push(
      await measure(c, async (i) => {
        const seq = sequences[i % c]!;
        // Keep the cached prompt prefix, as node-llama-cpp's own LlamaChat does and as the server does.
        const keep = Math.min(seq.compareContextTokens(prompt).firstDifferentIndex, prompt.length - 1);
        await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
        let n = 0;
        for await (const _ of seq.evaluate(prompt.slice(keep), { temperature: 0.7, topP: 1, seed: i })) if (++n >= maxTokens) break;
        return n;
      }),
    );
  }
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return results;
}

async function overHttp(modelPath: string): Promise<number[]> {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const configPath = join(tmpdir(), `alveare-bench-${port}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      engine: { parallel: PARALLEL, queue: 64, threads },
      specialists: {
        // Only the measured specialist, with the direct run's context size: same KV cache, same work.
        chat: { context_size: 1024 },
        classify: { enabled: false },
        summarise: { enabled: false },
        extract: { enabled: false },
        qa: { enabled: false },
        code: { enabled: false },
      },
    }),
  );
  const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
  const key = benchKey(join(tmpdir(), "alveare-bench-data"));
  const child = spawn(
    process.execPath,
    [cli, "serve", "--port", String(port), "--model", modelPath, "--config", configPath, "--data-dir", join(tmpdir(), "alveare-bench-data")],
    {
      env: { ...process.env, ALVEARE_LOG_LEVEL: "warn", ALVEARE_THREADS: String(threads) },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      /* starting */
    }
    if (i > 600) throw new Error("server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  const results: number[] = [];
  try {
    for (const c of CONCURRENCY) {
      results.push(
        await measure(c, async (i) => {
          const response = await fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
            body: JSON.stringify({
              model: "alveare-chat",
              messages: [{ role: "user", content: USER_PROMPT }],
              max_tokens: maxTokens,
              seed: i,
              stream: true,
              stream_options: { include_usage: true },
            }),
          });
          const text = await response.text();
          const usage = /"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(text);
          return Number(usage?.[1] ?? 0);
        }),
      );
    }
  } finally {
    child.kill("SIGTERM");
  }
  return results;
}

const modelPath = await benchModel();
process.stdout.write(
  `model: ${(parameterCount(BENCH_LLAMA) / 1e6).toFixed(0)}M params Q8_0 (random weights), threads ${threads}, ${maxTokens} tokens per stream, best of ${rounds}\n\n`,
);
const d = await direct(modelPath);
const h = await overHttp(modelPath);
process.stdout.write("| streams | direct tok/s | HTTP tok/s | HTTP / direct | HTTP vs 1 stream |\n|---|---|---|---|---|\n");
CONCURRENCY.forEach((c, i) => {
  process.stdout.write(`| ${c} | ${d[i]!.toFixed(1)} | ${h[i]!.toFixed(1)} | ${(h[i]! / d[i]!).toFixed(2)}x | ${(h[i]! / h[0]!).toFixed(2)}x |\n`);
});
