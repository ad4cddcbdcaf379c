import { TokenBias, type LlamaModel, type Token } from "node-llama-cpp";
import { vocabularyBytes, type VocabularyBytes } from "./token-bytes.js";

/**
 * Where a UTF-8 character stands after the bytes generated so far: 0 between
 * characters; otherwise the continuation bytes still due (1–3) and the range
 * the next one must be in (narrower after E0, ED, F0 and F4, which would
 * otherwise spell overlong forms, surrogates or code points past U+10FFFF).
 */
type Utf8State = number;
const BETWEEN: Utf8State = 0;
const state = (due: number, lo: number, hi: number): Utf8State => (due << 16) | (lo << 8) | hi;
const INVALID = -1;

/** The state after one more byte, or INVALID when no valid UTF-8 goes on that way. */
function next(at: Utf8State, byte: number): Utf8State {
  if (at === BETWEEN) {
    if (byte < 0x80) return BETWEEN;
    if (byte >= 0xc2 && byte <= 0xdf) return state(1, 0x80, 0xbf);
    if (byte === 0xe0) return state(2, 0xa0, 0xbf);
    if (byte === 0xed) return state(2, 0x80, 0x9f);
    if (byte >= 0xe1 && byte <= 0xef) return state(2, 0x80, 0xbf);
    if (byte === 0xf0) return state(3, 0x90, 0xbf);
    if (byte >= 0xf1 && byte <= 0xf3) return state(3, 0x80, 0xbf);
    if (byte === 0xf4) return state(3, 0x80, 0x8f);
    return INVALID; // a continuation byte where a character starts, C0, C1 or F5–FF
  }
  const due = at >> 16;
  if (byte < ((at >> 8) & 0xff) || byte > (at & 0xff)) return INVALID;
  return due === 1 ? BETWEEN : state(due - 1, 0x80, 0xbf);
}

/**
 * The state after a byte as llama.cpp's grammar reads it, where `next` finds it invalid: a lead byte
 * takes the bytes after it whatever they are (C0 and C1 one, F5–FF three), and a byte inside a character
 * counts as one of its bytes. Following the grammar there keeps the guard's idea of where a character
 * ends the grammar's own, so the two never rule out every token between them. A stray continuation
 * byte between characters is refused by the grammar itself: the state stays.
 */
function lenientNext(at: Utf8State, byte: number): Utf8State {
  if (at === BETWEEN) {
    if (byte === 0xc0 || byte === 0xc1) return state(1, 0x80, 0xbf);
    if (byte >= 0xf5) return state(3, 0x80, 0xbf);
    return BETWEEN;
  }
  const due = at >> 16;
  return due === 1 ? BETWEEN : state(due - 1, 0x80, 0xbf);
}

/**
 * The most tokens a state's bias may rule out. node-llama-cpp hands a bias to llama.cpp as arrays
 * built anew for every token (~20 µs for the ~80 tokens ruled out between characters, ~10 ms for
 * 32,000), so a state that rules out nearly the whole vocabulary (the middle of a character, where only
 * continuation bytes may follow) is left to the sampler on real vocabularies; the log-probability
 * sampler, which draws by itself, holds every state.
 */
const MAX_BIASED_TOKENS = 4096;

/** A model's tokens as UTF-8 steps: built once per model, each state's bias built on first need. */
class Utf8Tables {
  private readonly biases = new Map<Utf8State, TokenBias>();
  private readonly noBias: TokenBias;

  constructor(
    private readonly model: LlamaModel,
    private readonly bytes: VocabularyBytes,
  ) {
    this.noBias = new TokenBias(model.tokenizer);
  }

  /**
   * The state after a token: INVALID where its bytes cannot go on from `at` as valid UTF-8, or, when
   * `lenient`, the state the grammar reads there instead. A control token leaves the state as it is.
   */
  after(at: Utf8State, token: Token, lenient = false): Utf8State {
    const bytes = this.bytes[token];
    if (bytes === undefined || bytes === null) return at;
    let s = at;
    for (const byte of bytes) {
      const strict = next(s, byte);
      if (strict !== INVALID) s = strict;
      else if (lenient) s = lenientNext(s, byte);
      else return INVALID;
    }
    return s;
  }

  /** A bias that never picks a token that cannot go on from this state; none where they are too many (MAX_BIASED_TOKENS). */
  biasAt(at: Utf8State): TokenBias {
    let bias = this.biases.get(at);
    if (bias === undefined) {
      const ruledOut: Token[] = [];
      for (let token = 0; token < this.bytes.length && ruledOut.length <= MAX_BIASED_TOKENS; token++) {
        if (this.after(at, token as Token) === INVALID) ruledOut.push(token as Token);
      }
      bias = this.noBias;
      if (ruledOut.length <= MAX_BIASED_TOKENS) {
        bias = new TokenBias(this.model.tokenizer);
        for (const token of ruledOut) bias.set(token, "never");
      }
      this.biases.set(at, bias);
    }
    return bias;
  }
}

const tables = new WeakMap<LlamaModel, Utf8Tables | null>();

/**
 * Keeps a grammar-constrained answer valid UTF-8. llama.cpp's grammar reads
 * bytes leniently (a lead byte takes the next bytes as its character whatever
 * they are; F8 counts as a four-byte lead), so byte tokens can spell what the
 * grammar counts as one character and a UTF-8 decoder reads as U+FFFD and
 * several more: a schema's maxLength held by the grammar was then broken in the
 * text. This follows an answer's bytes and rules out, at each step, the tokens
 * that cannot continue them as valid UTF-8. Undefined for a vocabulary whose
 * bytes cannot be read (the answer is then generated as before).
 */
export class Utf8Guard {
  private at: Utf8State = BETWEEN;

  private constructor(private readonly tables: Utf8Tables) {}

  /**
   * Reads the model's vocabulary and rules out what it must between characters, at load time: ~0.1 s
   * for 32,000 tokens, which the first grammar-constrained request would otherwise wait for.
   */
  static prepare(model: LlamaModel): void {
    Utf8Guard.for(model)?.bias();
  }

  static for(model: LlamaModel): Utf8Guard | undefined {
    let t = tables.get(model);
    if (t === undefined) {
      const bytes = vocabularyBytes(model);
      t = bytes === undefined ? null : new Utf8Tables(model, bytes);
      tables.set(model, t);
    }
    return t === null ? undefined : new Utf8Guard(t);
  }

  /** For node-llama-cpp's sampler: asked before each token. */
  readonly bias = (): TokenBias => this.tables.biasAt(this.at);

  /** For the log-probability sampler, which draws by itself: every state held, a token at a time. */
  readonly allows = (token: Token): boolean => this.tables.after(this.at, token) !== INVALID;

  /**
   * Follows a generated token. An invalid one gets here where a state is left unbiased (a large
   * vocabulary inside a character): the guard then follows the grammar's lenient reading of it.
   */
  accept(token: Token): void {
    this.at = this.tables.after(this.at, token, true);
  }
}
