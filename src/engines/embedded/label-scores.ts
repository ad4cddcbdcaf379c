import type { ControlledEvaluateInputItem, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { TokenLogprob } from "../types.js";
import { RAW_DISTRIBUTION, type LogprobWriter } from "./logprob-sampler.js";

/** One label, teacher-forced after the prompt. */
export interface ScoredLabel {
  label: string;
  tokens: Token[];
  /** The sum of the model's raw log-probabilities of the label's tokens, each given the prompt and the tokens before it. */
  logprob: number;
  /** Per-token entries, when a writer was given. */
  entries: TokenLogprob[];
}

/** A label's tokens as the model would write them at the start of its answer. */
export const labelTokens = (model: LlamaModel, label: string): Token[] => model.tokenize(label, false, "trimLeadingSpace");

/**
 * Scores every label by the model's own probability of its full token sequence.
 * The sequence holds the prompt but its last token; each label evaluates that
 * token and its own tokens (all but its last), then is erased again, so every
 * label sees exactly the prompt.
 */
export async function scoreLabels(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  lastPromptToken: Token,
  labels: readonly string[],
  writer: LogprobWriter | undefined,
): Promise<ScoredLabel[]> {
  const start = sequence.nextTokenIndex;
  const scored: ScoredLabel[] = [];
  for (const label of labels) {
    const tokens = labelTokens(model, label);
    const items: ControlledEvaluateInputItem[] = [lastPromptToken, ...tokens.slice(0, -1)].map((token) => [
      token,
      { generateNext: { probabilities: true, options: RAW_DISTRIBUTION } },
    ]);
    try {
      const output = await sequence.controlledEvaluate(items);
      let logprob = 0;
      const entries: TokenLogprob[] = [];
      tokens.forEach((token, i) => {
        const probabilities = output[i]?.next.probabilities ?? new Map<Token, number>();
        logprob += Math.log(probabilities.get(token) ?? 0);
        if (writer !== undefined) entries.push(writer.entry(token, probabilities));
      });
      scored.push({ label, tokens, logprob, entries });
    } finally {
      await sequence.eraseContextTokenRanges([{ start, end: sequence.nextTokenIndex }]);
    }
  }
  return scored;
}

/** Probabilities from log-probabilities, normalised over the set (uniform when every one is impossible). */
export function normalise(logprobs: readonly number[]): number[] {
  const max = Math.max(...logprobs);
  if (!Number.isFinite(max)) return logprobs.map(() => 1 / logprobs.length);
  const weights = logprobs.map((l) => Math.exp(l - max));
  const total = weights.reduce((sum, w) => sum + w, 0);
  return weights.map((w) => w / total);
}
