import type { ControlledEvaluateInputItem, LlamaContextSequence, LlamaGrammarEvaluationState, LlamaModel, Token } from "node-llama-cpp";
import type { TokenAlternative, TokenLogprob } from "../types.js";
import { vocabularyBytes, type VocabularyBytes } from "./token-bytes.js";

/**
 * Sampler options that leave the distribution as the model gives it
 * (temperature 1, no truncation): the probabilities llama.cpp reports are then
 * the softmax of the raw logits, before any temperature, top-p or grammar.
 */
export const RAW_DISTRIBUTION = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;
/** node-llama-cpp's default top-k, which the native sampling path applies as well. */
const TOP_K = 40;
/** The floor OpenAI reports for tokens too unlikely to express (log(0) would not survive JSON). */
const LOGPROB_FLOOR = -9999;

export interface SamplingOptions {
  temperature: number;
  topP: number;
  /** A 32-bit seed. */
  seed: number;
  grammar?: LlamaGrammarEvaluationState | undefined;
  /** Tokens ruled out beside the grammar's (the UTF-8 guard's), asked before each token. */
  allows?: ((token: Token) => boolean) | undefined;
  /** Told how long each read of a distribution took; the next read waits for what it returns (DistributionPacer). */
  pace?: ((readMs: number) => Promise<void> | undefined) | undefined;
}

export interface SampledToken {
  token: Token;
  /** The raw next-token distribution the token was drawn from, most likely first. */
  probabilities: Map<Token, number>;
}

/** Grammar checks on one evaluation state; node-llama-cpp (pinned) keeps them internal, so they are reached through its bindings. */
interface GrammarChecks {
  allows(token: Token): boolean;
  accept(token: Token): void;
}

interface SamplerBindings {
  canBeNextTokenForGrammarEvaluationState(state: unknown, token: Token): boolean;
  acceptGrammarEvaluationStateToken(state: unknown, token: Token): void;
}

function grammarChecks(model: LlamaModel, grammar: LlamaGrammarEvaluationState): GrammarChecks {
  const bindings = (model.llama as unknown as { _bindings: { AddonSampler: SamplerBindings } })._bindings.AddonSampler;
  const state = (grammar as unknown as { _state: unknown })._state;
  return {
    allows: (token) => bindings.canBeNextTokenForGrammarEvaluationState(state, token),
    accept: (token) => bindings.acceptGrammarEvaluationStateToken(state, token),
  };
}

/** mulberry32: a small seeded generator, so that a seed gives the same samples on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Draws one of the candidates (most likely first) as llama.cpp's default chain
 * does: top-k, then top-p, then temperature. Undefined when none has weight.
 */
export function draw<T>(candidates: readonly (readonly [T, number])[], temperature: number, topP: number, random: () => number): T | undefined {
  if (candidates.length === 0) return undefined;
  if (temperature <= 0) return candidates[0]?.[0];
  const top = candidates.slice(0, TOP_K);
  const mass = top.reduce((sum, [, p]) => sum + p, 0);
  const kept: (readonly [T, number])[] = [];
  let cumulative = 0;
  for (const candidate of top) {
    kept.push(candidate);
    cumulative += candidate[1];
    if (cumulative >= topP * mass) break;
  }
  const weights = kept.map(([, p]) => Math.pow(p, 1 / temperature));
  const total = weights.reduce((sum, w) => sum + w, 0);
  if (!(total > 0)) return kept[0]?.[0];
  let r = random() * total;
  for (let i = 0; i < kept.length; i++) {
    r -= weights[i]!;
    if (r <= 0) return kept[i]![0];
  }
  return kept.at(-1)?.[0];
}

/** The TOP_K most likely candidates (the distribution is most likely first) that `allowed` accepts. */
function mostLikely(probabilities: ReadonlyMap<Token, number>, allowed: (token: Token) => boolean): Array<[Token, number]> {
  const found: Array<[Token, number]> = [];
  for (const [token, p] of probabilities) {
    if (!allowed(token)) continue;
    found.push([token, p]);
    if (found.length >= TOP_K) break;
  }
  return found;
}

/**
 * Generates tokens on a sequence while reading the model's raw distribution at
 * every step, and samples from it here: the reported log-probabilities are the
 * model's own, and the sampling follows the request (temperature, top-p, seed,
 * grammar). Used only when log-probabilities are asked for; the native path is
 * faster. Ends at an end-of-generation token (not yielded) or when nothing can
 * be sampled.
 */
export async function* sampleWithProbabilities(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  input: readonly Token[],
  options: SamplingOptions,
): AsyncGenerator<SampledToken, void, void> {
  const random = seededRandom(options.seed);
  const grammar = options.grammar === undefined ? undefined : grammarChecks(model, options.grammar);
  const guard = options.allows;
  const allowed = grammar === undefined ? guard : guard === undefined ? grammar.allows : (token: Token) => guard(token) && grammar.allows(token);
  let pending: readonly Token[] = input;
  for (;;) {
    const last = pending.length - 1;
    const items: ControlledEvaluateInputItem[] = pending.map((token, i) =>
      i === last ? [token, { generateNext: { probabilities: true, options: RAW_DISTRIBUTION } }] : token,
    );
    const started = performance.now();
    const probabilities = (await sequence.controlledEvaluate(items))[last]?.next.probabilities;
    const readMs = performance.now() - started;
    if (probabilities === undefined) return;
    // A draw looks at the TOP_K most likely candidates only, so only those are gathered, never the whole vocabulary.
    let token = draw(
      mostLikely(probabilities, () => true),
      options.temperature,
      options.topP,
      random,
    );
    // As llama.cpp does: the unconstrained draw when the grammar accepts it, else a draw among what the grammar allows.
    if (allowed !== undefined && token !== undefined && !allowed(token)) {
      token = draw(mostLikely(probabilities, allowed), options.temperature, options.topP, random);
    }
    if (token === undefined || model.isEogToken(token)) return;
    grammar?.accept(token);
    yield { token, probabilities };
    pending = [token];
    const wait = options.pace?.(readMs);
    if (wait !== undefined) await wait;
  }
}

/** A probability as a log-probability that JSON can carry. */
export const logprobOf = (p: number): number => (p > 0 ? Math.max(Math.log(p), LOGPROB_FLOOR) : LOGPROB_FLOOR);

/** A token's text as an entry shows it, and its bytes (shared by every entry that names the token: never mutated). */
type Piece = Pick<TokenAlternative, "token" | "bytes">;

/**
 * Builds OpenAI-shaped log-probability entries for tokens of one model. Each
 * entry's text is the token as it reads in the answer, so the entries' bytes,
 * joined, are the answer's bytes: a word's leading space is kept after the
 * first token (SentencePiece drops it only where a text starts, as the answer's
 * own decoder does), and a token that holds part of a character (a byte-fallback
 * token, a byte-level BPE piece) carries its raw bytes, read from the vocabulary.
 */
export class LogprobWriter {
  /** Texts of tokens that follow others (`inText`) and of tokens that start an answer (`atStart`). */
  private readonly inText = new Map<Token, Piece>();
  private readonly atStart = new Map<Token, Piece>();
  /** An ordinary token to detokenize after: a token's text after any other one is the same. */
  private readonly before: Token[];

  /** Tokens' raw bytes, for those the detokenizer writes as U+FFFD (part of a character). */
  private readonly raw: VocabularyBytes | undefined;

  constructor(
    private readonly model: LlamaModel,
    private readonly top: number,
  ) {
    this.before = model.tokenize("a", false).slice(-1);
    this.raw = vocabularyBytes(model);
  }

  /** The entry of `token` drawn from `probabilities`; `first` when it starts the answer. */
  entry(token: Token, probabilities: ReadonlyMap<Token, number>, first: boolean): TokenLogprob {
    const top: TokenAlternative[] = [];
    for (const [t, p] of probabilities) {
      if (top.length >= this.top) break;
      top.push(this.alternative(t, p, first));
    }
    return { ...this.alternative(token, probabilities.get(token) ?? 0, first), top };
  }

  private alternative(token: Token, p: number, first: boolean): TokenAlternative {
    return { ...this.piece(token, first), logprob: logprobOf(p) };
  }

  /** A token's text and bytes: a control token by name, with no bytes (the answer's text leaves it out). */
  private piece(token: Token, first: boolean): Piece {
    const cache = first ? this.atStart : this.inText;
    let piece = cache.get(token);
    if (piece === undefined) {
      const text = this.model.detokenize([token], true, first ? undefined : this.before);
      piece = { token: text, bytes: this.bytesOf(token, text) };
      cache.set(token, piece);
    }
    return piece;
  }

  private bytesOf(token: Token, text: string): number[] | null {
    if (this.model.isSpecialToken(token)) return null;
    const raw = this.raw?.[token];
    if (!text.includes("\uFFFD") || raw === undefined || raw === null) return [...Buffer.from(text, "utf8")];
    // Part of a character: the vocabulary's bytes, less a word's leading space where the text starts without it.
    return raw[0] === 0x20 && !text.startsWith(" ") ? [...raw.subarray(1)] : [...raw];
  }
}
