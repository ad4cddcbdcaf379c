import type { LlamaModel, Token } from "node-llama-cpp";

interface ThreadMeasurement {
  threads: number;
  /** Decoding: tokens per second over `sequences` sequences generating together. */
  tokensPerSecond: number;
  /** Prompt processing: tokens per second evaluating one long prompt. */
  promptTokensPerSecond: number;
}

export interface ThreadChoice {
  /** Best for decoding (batches of one token per sequence). */
  decode: number;
  /** Best for prompt processing (batches of many tokens). */
  prompt: number;
}

const PROMPT = "The quarterly report says revenue grew and costs fell, so the outlook is";
const TOKENS_PER_SEQUENCE = 12;
const PROMPT_BATCH_TOKENS = 128;

/**
 * Decoding is memory-bound and prompt processing compute-bound, so their best
 * thread counts differ; both depend on the model, and with more threads than
 * free cores llama.cpp slows down by an order of magnitude. So rather than
 * guess, time both with each candidate thread count.
 */
export async function measureThreads(model: LlamaModel, candidates: readonly number[], sequences: number): Promise<ThreadMeasurement[]> {
  const prompt = model.tokenize(PROMPT);
  const longPrompt: Token[] = [];
  while (longPrompt.length < PROMPT_BATCH_TOKENS) longPrompt.push(...prompt);
  longPrompt.length = PROMPT_BATCH_TOKENS;
  const results: ThreadMeasurement[] = [];
  for (const threads of candidates) {
    const context = await model.createContext({ contextSize: 2 * PROMPT_BATCH_TOKENS, sequences, threads });
    try {
      const seqs = Array.from({ length: sequences }, () => context.getSequence());
      // Warm-up pass (first evaluation allocates buffers); it also fills the prompt.
      await Promise.all(seqs.map((s) => s.evaluateWithoutGeneratingNewTokens(prompt)));
      let started = performance.now();
      await Promise.all(
        seqs.map(async (s, i) => {
          let n = 0;
          for await (const _ of s.evaluate(prompt.slice(i % prompt.length, (i % prompt.length) + 1), { temperature: 0 })) {
            if (++n >= TOKENS_PER_SEQUENCE) break;
          }
        }),
      );
      const tokensPerSecond = (sequences * TOKENS_PER_SEQUENCE) / ((performance.now() - started) / 1000);
      const first = seqs[0]!;
      await first.clearHistory();
      started = performance.now();
      await first.evaluateWithoutGeneratingNewTokens(longPrompt);
      const promptTokensPerSecond = PROMPT_BATCH_TOKENS / ((performance.now() - started) / 1000);
      results.push({ threads, tokensPerSecond, promptTokensPerSecond });
    } finally {
      await context.dispose();
    }
  }
  return results;
}

function best(measurements: readonly ThreadMeasurement[], rate: (m: ThreadMeasurement) => number): number {
  let top = measurements[0];
  for (const m of measurements) if (top === undefined || rate(m) > rate(top)) top = m;
  return top?.threads ?? 1;
}

/** The fastest decoding thread count. */
export function fastest(measurements: readonly ThreadMeasurement[]): number {
  return best(measurements, (m) => m.tokensPerSecond);
}

export function fastestPerPhase(measurements: readonly ThreadMeasurement[]): ThreadChoice {
  return { decode: fastest(measurements), prompt: best(measurements, (m) => m.promptTokensPerSecond) };
}
