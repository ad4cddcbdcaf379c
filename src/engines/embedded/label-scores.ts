import type { ControlledEvaluateInputItem, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { TokenLogprob } from "../types.js";
import type { LockTurns } from "./lock-turns.js";
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
 * Context positions that scoring `labels` takes after the prompt: each label is evaluated after it but its
 * last token (whose distribution is never needed); at least the one position any answer takes.
 */
export function labelsRoom(model: LlamaModel, labels: readonly string[]): { longest: number; room: number } {
  const longest = Math.max(...labels.map((label) => labelTokens(model, label).length));
  return { longest, room: Math.max(1, longest - 1) };
}

/**
 * Positions scored per evaluation: each carries the whole vocabulary's
 * distribution, so a long label is scored in slices rather than holding all of
 * its distributions at once.
 */
const POSITIONS_PER_SLICE = 32;

/**
 * Scores every label by the model's own probability of its full token sequence.
 * The sequence holds the prompt but its last token; each label evaluates that
 * token and its own tokens (all but its last), then is erased again, so every
 * label sees exactly the prompt. Undefined when the signal ended it first.
 * The erase needs the context's lock, so it takes its turn (`turns`) rather
 * than waiting behind every generation on the model.
 */
export async function scoreLabels(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  lastPromptToken: Token,
  labels: readonly string[],
  writer: LogprobWriter | undefined,
  signal: AbortSignal,
  turns: LockTurns,
): Promise<ScoredLabel[] | undefined> {
  const start = sequence.nextTokenIndex;
  const scored: ScoredLabel[] = [];
  for (const label of labels) {
    const tokens = labelTokens(model, label);
    // Position i predicts tokens[i] from the prompt and tokens[0..i-1].
    const inputs = [lastPromptToken, ...tokens.slice(0, -1)];
    let logprob = 0;
    const entries: TokenLogprob[] = [];
    try {
      for (let from = 0; from < inputs.length; from += POSITIONS_PER_SLICE) {
        if (signal.aborted) return undefined;
        const items: ControlledEvaluateInputItem[] = inputs
          .slice(from, from + POSITIONS_PER_SLICE)
          .map((token) => [token, { generateNext: { probabilities: true, options: RAW_DISTRIBUTION } }]);
        const output = await sequence.controlledEvaluate(items);
        items.forEach((_, i) => {
          const token = tokens[from + i]!;
          const probabilities = output[i]?.next.probabilities ?? new Map<Token, number>();
          logprob += Math.log(probabilities.get(token) ?? 0);
          if (writer !== undefined) entries.push(writer.entry(token, probabilities, from + i === 0));
        });
      }
    } finally {
      await turns.take(() => sequence.eraseContextTokenRanges([{ start, end: sequence.nextTokenIndex }]));
    }
    scored.push({ label, tokens, logprob, entries });
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
