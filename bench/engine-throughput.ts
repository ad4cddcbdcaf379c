/**
 * Decoding throughput through the HTTP API against the same work driven directly
 * through node-llama-cpp, on a random-weight model of realistic shape, same
 * threads, same run, alternating rounds, medians; CPU per token of the process doing the work.
 * Usage: node dist/bench/engine-throughput.js [--threads N] [--tokens N] [--rounds N] [--streams 1,2,4,8] [--requests N] [--no-stream]
 *        [--client http|fetch] [--profile DIR]
 */
import { spawn } from "node:child_process";
import { Agent, request as httpRequest } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, resolveChatWrapper, type LlamaModel } from "node-llama-cpp";
import { BENCH_LLAMA, parameterCount } from "../test/fixtures/gguf/random-llama.js";
import { benchModel } from "./bench-model.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { benchKey } from "./bench-key.js";
import { cpuSeconds } from "./bench-processes.js";

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: "1" },
    tokens: { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    profile: { type: "string" },
    streams: { type: "string", default: "1,2,4,8" },
    // Requests one after another per stream in each measurement: short answers need several to rise above one request's noise.
    requests: { type: "string", default: "1" },
    "no-stream": { type: "boolean", default: false },
    // The client shares the machine's cores with the server: node:http reads a stream with less CPU than fetch's web streams.
    client: { type: "string", default: "http" },
  },
});
const threads = Number(values.threads);
const maxTokens = Number(values.tokens);
const rounds = Number(values.rounds);
const requestsPerStream = Number(values.requests);
if (values.client !== "http" && values.client !== "fetch") throw new Error(`--client is http or fetch, not ${values.client}`);
const CONCURRENCY = values.streams.split(",").map(Number);
/** Whole responses instead of SSE: separates the per-token cost of the stream's writes from the rest of the path. */
const streamed = !values["no-stream"];
const PARALLEL = 8;
const USER_PROMPT = "Tell me about the quarterly revenue figures and what drove them.";
const SYSTEM_PROMPT = defaultSpecialists().find((s) => s.id === "chat")!.systemPrompt;

interface Measured {
  tokensPerSecond: number;
  /** CPU time of the process doing the work (the bench process direct, the server over HTTP) per completion token. */
  cpuMsPerToken: number;
  /** This process's CPU per completion token: over HTTP, the client's share of the machine. */
  clientMsPerToken: number;
}

/** Aggregate completion tokens per second of `c` concurrent generations, and the CPU they cost. */
async function measure(c: number, round: number, pid: number, run: (i: number) => Promise<number>): Promise<Measured> {
  const cpuBefore = cpuSeconds(pid);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const stream = async (i: number): Promise<number> => {
    let n = 0;
    // A multiple of PARALLEL plus the stream's index: `i % c` still names the stream's own sequence.
    for (let r = 0; r < requestsPerStream; r++) n += await run((round * requestsPerStream + r) * PARALLEL + i);
    return n;
  };
  const tokens = (await Promise.all(Array.from({ length: c }, (_, i) => stream(i)))).reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - started) / 1000;
  const client = process.cpuUsage(clientBefore);
  return {
    tokensPerSecond: tokens / seconds,
    cpuMsPerToken: ((cpuSeconds(pid) - cpuBefore) * 1000) / Math.max(1, tokens),
    clientMsPerToken: (client.user + client.system) / 1000 / Math.max(1, tokens),
  };
}

/** One way of running `c` streams: in this process, or over HTTP. */
interface Side {
  pid: number;
  run(c: number, i: number): Promise<number>;
  close(): Promise<void>;
}

async function direct(modelPath: string): Promise<Side> {
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
  return {
    pid: process.pid,
    async run(c, i) {
      const seq = sequences[i % c]!;
      // Keep the cached prompt prefix, as node-llama-cpp's own LlamaChat does and as the server does.
      const keep = Math.min(seq.compareContextTokens(prompt).firstDifferentIndex, prompt.length - 1);
      await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
      let n = 0;
      for await (const _ of seq.evaluate(prompt.slice(keep), { temperature: 0.7, topP: 1, seed: i })) if (++n >= maxTokens) break;
      return n;
    },
    async close() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

async function overHttp(modelPath: string): Promise<Side> {
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
        embed: { enabled: false },
      },
    }),
  );
  const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
  const dataDir = mkdtempSync(join(tmpdir(), "alveare-bench-data-"));
  const key = benchKey(dataDir);
  const profile = values.profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${values.profile}`];
  const child = spawn(
    process.execPath,
    [...profile, cli, "serve", "--port", String(port), "--model", modelPath, "--config", configPath, "--data-dir", dataDir],
    {
      env: { ...process.env, ALVEARE_LOG_LEVEL: "warn", ALVEARE_THREADS: String(threads), ALVEARE_METRICS_PORT: "0" },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      // Ready, not just up: the model loaded and the system prompts' snapshots built.
      if ((await fetch(`${url}/ready`)).ok) break;
    } catch {
      /* starting */
    }
    if (i > 600) throw new Error("server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    async run(_c, i) {
      const body = JSON.stringify({
        model: "alveare-chat",
        messages: [{ role: "user", content: USER_PROMPT }],
        max_tokens: maxTokens,
        seed: i,
        ...(streamed ? { stream: true, stream_options: { include_usage: true } } : {}),
      });
      const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
      const { status, text } = values.client === "fetch" ? await postWithFetch(url, headers, body) : await postWithHttp(url, headers, body);
      if (status !== 200) throw new Error(`HTTP ${status}: ${text.slice(0, 300)}`);
      const usage = /"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(text);
      if (usage === null) throw new Error(`no usage in the response: ${text.slice(-300)}`);
      return Number(usage?.[1] ?? 0);
    },
    async close() {
      child.kill("SIGTERM");
      await new Promise((r) => child.on("exit", r));
    },
  };
}

interface Posted {
  status: number;
  text: string;
}

async function postWithFetch(url: string, headers: Record<string, string>, body: string): Promise<Posted> {
  const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body });
  return { status: response.status, text: await response.text() };
}

const keepAlive = new Agent({ keepAlive: true });

/** The same request through node:http: the response's chunks kept as they come and joined once at the end. */
function postWithHttp(url: string, headers: Record<string, string>, body: string): Promise<Posted> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/v1/chat/completions`, { method: "POST", headers, agent: keepAlive }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const modelPath = await benchModel();
process.stdout.write(
  `model: ${(parameterCount(BENCH_LLAMA) / 1e6).toFixed(0)}M params Q8_0 (random weights), threads ${threads}, ${maxTokens} tokens per stream, ${requestsPerStream} request(s) per stream and round, median of ${rounds} alternating rounds, HTTP ${streamed ? "streamed (SSE)" : "whole responses"} through ${values.client === "fetch" ? "fetch" : "node:http"}\n\n`,
);
const sides = { direct: await direct(modelPath), http: await overHttp(modelPath) };
const results = { direct: CONCURRENCY.map((): Measured[] => []), http: CONCURRENCY.map((): Measured[] => []) };
try {
  // Warm-up: one stream each way (JIT, the server's pools, the prompt's cached prefix).
  await sides.direct.run(1, 0);
  await sides.http.run(1, 0);
  for (let round = 0; round < rounds; round++) {
    for (const [ci, c] of CONCURRENCY.entries()) {
      // Direct first in even rounds, HTTP first in odd ones: drift on the machine hits both alike.
      const order = (round + ci) % 2 === 0 ? (["direct", "http"] as const) : (["http", "direct"] as const);
      for (const name of order) results[name][ci]!.push(await measure(c, round, sides[name].pid, (i) => sides[name].run(c, i)));
    }
  }
} finally {
  await sides.http.close();
  await sides.direct.close();
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(
  "| streams | direct tok/s | HTTP tok/s | HTTP / direct (median of per-round ratios) | HTTP vs 1 stream | direct CPU ms / token | server CPU ms / token | client CPU ms / token |\n|---|---|---|---|---|---|---|---|\n",
);
const h0 = median(results.http[0]!.map((r) => r.tokensPerSecond));
CONCURRENCY.forEach((c, i) => {
  const d = results.direct[i]!;
  const h = results.http[i]!;
  const dt = median(d.map((r) => r.tokensPerSecond));
  const ht = median(h.map((r) => r.tokensPerSecond));
  const ratio = median(h.map((r, k) => r.tokensPerSecond / d[k]!.tokensPerSecond));
  process.stdout.write(
    `| ${c} | ${dt.toFixed(1)} | ${ht.toFixed(1)} | ${ratio.toFixed(2)}x | ${(ht / h0).toFixed(2)}x | ${median(d.map((r) => r.cpuMsPerToken)).toFixed(2)} | ${median(h.map((r) => r.cpuMsPerToken)).toFixed(2)} | ${median(h.map((r) => r.clientMsPerToken)).toFixed(3)} |\n`,
  );
});
process.stdout.write(
  `\nper-round HTTP / direct: ${CONCURRENCY.map((c, i) => `${c}: ${results.http[i]!.map((r, k) => (r.tokensPerSecond / results.direct[i]![k]!.tokensPerSecond).toFixed(2)).join("/")}`).join(", ")}\n`,
);
