import type { LlamaModel, Token } from "node-llama-cpp";

/** Tokens held back at most while waiting for the rest of a UTF-8 character. */
const MAX_HELD_TOKENS = 4;
/** Previous tokens given to the detokenizer so word-leading spaces come out right. */
const CONTEXT_TOKENS = 4;

/**
 * Turns generated tokens into text incrementally. A multi-byte character can be
 * split across byte-fallback tokens; those are held until the character is whole,
 * so streamed text never contains a broken character.
 */
export class TokenDecoder {
  private readonly done: Token[] = [];
  private held: Token[] = [];
  /**
   * Where each pushed token's text starts in the text returned so far (a stop string's cut keeps the log-probabilities
   * of the tokens that start before it). A held token's start is provisional, the text's end, until its character is whole.
   */
  readonly starts: number[] = [];
  private length = 0;

  /**
   * `shown`: control tokens written as their text (a chat format's call syntax, such as Mistral's "[TOOL_CALLS]",
   * which the call parser must read); any other control token writes nothing, as the answer's text leaves it out.
   */
  constructor(
    private readonly model: LlamaModel,
    private readonly shown: ReadonlySet<Token> = new Set(),
  ) {}

  push(token: Token): string {
    if (this.shown.has(token)) {
      const before = this.flush();
      this.starts.push(this.length);
      this.done.push(token);
      const text = this.model.detokenize([token], true);
      this.length += text.length;
      return before + text;
    }
    this.starts.push(this.length);
    this.held.push(token);
    const text = this.model.detokenize(this.held, false, this.done.slice(-CONTEXT_TOKENS));
    if (text.endsWith("\uFFFD") && this.held.length < MAX_HELD_TOKENS) return "";
    return this.commit(text);
  }

  flush(): string {
    if (this.held.length === 0) return "";
    return this.commit(this.model.detokenize(this.held, false, this.done.slice(-CONTEXT_TOKENS)));
  }

  private commit(text: string): string {
    // Held tokens that never made a whole character (a stray byte, written U+FFFD) are followed by text of their
    // own: each starts where the text of those before it, alone, stops agreeing with the whole.
    const first = this.starts.length - this.held.length;
    const context = this.done.slice(-CONTEXT_TOKENS);
    for (let i = 1, at = 0; i < this.held.length; i++) {
      at = Math.max(at, agreeing(this.model.detokenize(this.held.slice(0, i), false, context), text));
      this.starts[first + i] = this.length + at;
    }
    this.done.push(...this.held);
    this.held = [];
    this.length += text.length;
    return text;
  }
}

/** Length of the common start of two texts. */
function agreeing(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
