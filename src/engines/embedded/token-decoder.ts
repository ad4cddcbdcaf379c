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
      this.done.push(token);
      return before + this.model.detokenize([token], true);
    }
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
    this.done.push(...this.held);
    this.held = [];
    return text;
  }
}
