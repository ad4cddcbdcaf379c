import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GenerationRequest } from "../src/engines/types.js";
import { BENCH_LLAMA, writeRandomLlama } from "../test/fixtures/gguf/random-llama.js";

/** The 134M-parameter random-weight bench model, generated once into the temp dir and reused by every bench. */
export async function benchModel(): Promise<string> {
  const dir = join(tmpdir(), "alveare-bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `llama-${BENCH_LLAMA.layers}x${BENCH_LLAMA.embedding}-q8_0.gguf`);
  if (!existsSync(path)) await writeRandomLlama(path, { ...BENCH_LLAMA, weights: "q8_0", seed: 7 });
  return path;
}

/** A greedy text request of one user message to an engine, never aborted unless `more` brings a signal. */
export const textRequest = (content: string, maxTokens: number, more: Partial<GenerationRequest> = {}): GenerationRequest => ({
  messages: [{ role: "user", content }],
  maxTokens,
  temperature: 0,
  topP: 1,
  stop: [],
  constraint: { type: "text" },
  signal: new AbortController().signal,
  ...more,
});
