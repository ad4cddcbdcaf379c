import {
  LlamaGrammarEvaluationState,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { errors } from "../../errors.js";
import { StopScanner } from "../stop-scanner.js";
import type { ChatMessage, Engine, FinishReason, GenerationRequest, GenerationResult } from "../types.js";
import type { GrammarCache } from "./grammars.js";
import { SequencePool } from "./sequence-pool.js";
import { TokenDecoder } from "./token-decoder.js";

export interface EmbeddedEngineOptions {
  name: string;
  model: LlamaModel;
  context: LlamaContext;
  grammars: GrammarCache;
  /** Requests that may wait for a free sequence before new ones get 503. */
  maxQueue: number;
}

interface FormattedPrompt {
  tokens: Token[];
  /** Text stop triggers of the chat format (e.g. "### Human" for the fallback format). */
  stopStrings: string[];
  /** Single special tokens that end a turn in the chat format. */
  stopTokens: Set<Token>;
}

const UINT32 = 2 ** 32;

/**
 * llama.cpp's sampler takes a 32-bit seed. Any integer a client sends maps onto
 * one (so -5 and 0 stay different); without one, each request draws its own —
 * node-llama-cpp's default (the current second) would give every request in the
 * same second the same "random" output.
 */
export function samplerSeed(seed: number | undefined): number {
  if (seed === undefined) return Math.floor(Math.random() * UINT32);
  return ((seed % UINT32) + UINT32) % UINT32;
}

/**
 * Runs specialists on a model loaded in this process. One context holds several
 * sequences; concurrent requests each take a sequence and node-llama-cpp decodes
 * them together in one batch per step.
 */
export class EmbeddedEngine implements Engine {
  readonly name: string;
  readonly contextSize: number;
  /** The loaded weights; shared with every other engine on the same model file. */
  readonly model: LlamaModel;
  private readonly context: LlamaContext;
  private readonly grammars: GrammarCache;
  private readonly chatWrapper: ChatWrapper;
  private readonly pool: SequencePool<LlamaContextSequence>;
  private readonly running = new Set<Promise<unknown>>();

  constructor(options: EmbeddedEngineOptions) {
    this.name = options.name;
    this.model = options.model;
    this.context = options.context;
    this.grammars = options.grammars;
    this.contextSize = options.context.contextSize;
    // The GGUF's own chat template when it has one; otherwise a generic format.
    this.chatWrapper = resolveChatWrapper(options.model);
    const sequences = Array.from({ length: options.context.totalSequences }, () => options.context.getSequence());
    this.pool = new SequencePool(sequences, options.maxQueue);
  }

  get parallel(): number { return this.context.totalSequences; }
  get queued(): number { return this.pool.queued; }

  /** Token count of messages as this engine formats them (used by tests and metering checks). */
  countPromptTokens(messages: readonly ChatMessage[]): number {
    return this.format(messages).tokens.length;
  }

  async generate(request: GenerationRequest): Promise<GenerationResult> {
    const prompt = this.format(request.messages);
    const contextSize = Math.min(this.contextSize, request.contextLimit ?? Infinity);
    if (prompt.tokens.length >= contextSize) {
      throw errors.contextLengthExceeded(prompt.tokens.length, contextSize, "messages");
    }
    const grammar = await this.grammars.get(request.constraint);
    let sequence: LlamaContextSequence;
    try {
      sequence = await this.pool.acquire(request.signal);
    } catch (error) {
      if (request.signal.aborted) return { text: "", promptTokens: 0, completionTokens: 0, finishReason: "stop", aborted: true };
      throw error;
    }
    const run = this.run(sequence, prompt, contextSize, request, grammar === undefined ? undefined : new LlamaGrammarEvaluationState({ model: this.model, grammar }));
    this.running.add(run);
    try {
      return await run;
    } finally {
      this.running.delete(run);
      this.pool.release(sequence);
    }
  }

  private async run(
    sequence: LlamaContextSequence,
    prompt: FormattedPrompt,
    contextSize: number,
    request: GenerationRequest,
    grammarEvaluationState: LlamaGrammarEvaluationState | undefined,
  ): Promise<GenerationResult> {
    const input = await this.reusePrefix(sequence, prompt.tokens);
    const maxTokens = Math.min(request.maxTokens, contextSize - prompt.tokens.length);
    const decoder = new TokenDecoder(this.model);
    const scanner = new StopScanner([...prompt.stopStrings, ...request.stop]);
    let text = "";
    const emit = (piece: string): void => {
      if (piece.length === 0) return;
      text += piece;
      request.onText?.(piece);
    };
    let completionTokens = 0;
    let finishReason: FinishReason = "stop";
    let aborted = request.signal.aborted;
    if (!aborted) {
      const tokens = sequence.evaluate(input, {
        temperature: request.temperature,
        topP: request.topP,
        seed: samplerSeed(request.seed),
        grammarEvaluationState,
      });
      for await (const token of tokens) {
        completionTokens++;
        if (prompt.stopTokens.has(token)) break;
        emit(scanner.push(decoder.push(token)));
        if (scanner.stopped) break;
        if (request.signal.aborted) {
          aborted = true;
          break;
        }
        if (completionTokens >= maxTokens) {
          finishReason = "length";
          break;
        }
      }
    }
    if (!scanner.stopped) emit(scanner.push(decoder.flush()) + scanner.flush());
    return { text, promptTokens: prompt.tokens.length, completionTokens, finishReason, aborted };
  }

  /**
   * Keeps the sequence's cached tokens that the new prompt starts with (a
   * specialist's system prompt, earlier chat turns) and returns the tokens that
   * still need evaluating. At least one token is always evaluated, for its logits.
   */
  private async reusePrefix(sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
    const keep = Math.min(sequence.compareContextTokens(tokens).firstDifferentIndex, tokens.length - 1);
    if (keep < sequence.nextTokenIndex) {
      await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
    }
    return tokens.slice(keep);
  }

  private format(messages: readonly ChatMessage[]): FormattedPrompt {
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === "system" ? { type: "system", text: m.content }
      : m.role === "user" ? { type: "user", text: m.content }
      : { type: "model", response: [m.content] },
    );
    // An open model turn at the end asks the wrapper for the generation prompt.
    history.push({ type: "model", response: [] });
    const state = this.chatWrapper.generateContextState({ chatHistory: history });
    const stopStrings: string[] = [];
    const stopTokens = new Set<Token>();
    for (const trigger of state.stopGenerationTriggers) {
      if (trigger.values.every((v) => typeof v === "string")) {
        const s = trigger.values.join("");
        if (s.length > 0) stopStrings.push(s);
      } else {
        const tokens = trigger.tokenize(this.model.tokenizer, "trimLeadingSpace");
        if (tokens.length === 1 && tokens[0] !== undefined) stopTokens.add(tokens[0]);
      }
    }
    return { tokens: state.contextText.tokenize(this.model.tokenizer), stopStrings, stopTokens };
  }

  /** Rejects queued requests, lets running ones end (their signals are aborted by the caller), frees the context. */
  async close(): Promise<void> {
    this.pool.drain(errors.overloaded(1));
    await Promise.allSettled([...this.running]);
    await this.context.dispose();
  }
}
