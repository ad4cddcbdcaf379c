import type { LlamaModel } from "node-llama-cpp";

export interface ThreadMeasurement {
  threads: number;
  tokensPerSecond: number;
}

const PROMPT = "The quarterly report says revenue grew and costs fell, so the outlook is";
const TOKENS_PER_SEQUENCE = 12;

/**
 * Decoding speed depends on the model and on how many sequences decode together,
 * and with more threads than free cores llama.cpp slows down by an order of
 * magnitude. So rather than guess, decode a few tokens on `sequences` sequences
 * with each candidate thread count and keep the fastest.
 */
export async function measureThreads(model: LlamaModel, candidates: readonly number[], sequences: number): Promise<ThreadMeasurement[]> {
  const prompt = model.tokenize(PROMPT);
  const results: ThreadMeasurement[] = [];
  for (const threads of candidates) {
    const context = await model.createContext({ contextSize: 256, sequences, threads });
    try {
      const seqs = Array.from({ length: sequences }, () => context.getSequence());
      // Warm-up pass (first evaluation allocates buffers); it also fills the prompt.
      await Promise.all(seqs.map((s) => s.evaluateWithoutGeneratingNewTokens(prompt)));
      const started = performance.now();
      await Promise.all(
        seqs.map(async (s, i) => {
          let n = 0;
          for await (const _ of s.evaluate(prompt.slice(i % prompt.length, (i % prompt.length) + 1), { temperature: 0 })) {
            if (++n >= TOKENS_PER_SEQUENCE) break;
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      results.push({ threads, tokensPerSecond: (sequences * TOKENS_PER_SEQUENCE) / seconds });
    } finally {
      await context.dispose();
    }
  }
  return results;
}

export function fastest(measurements: readonly ThreadMeasurement[]): number {
  let best = measurements[0];
  for (const m of measurements) if (best === undefined || m.tokensPerSecond > best.tokensPerSecond) best = m;
  return best?.threads ?? 1;
}
