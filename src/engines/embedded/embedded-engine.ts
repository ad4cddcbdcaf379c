import { createHash, randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  LlamaGrammarEvaluationState,
  type LlamaGrammar,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  type ControlledEvaluateInputItem,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { errors } from "../../errors.js";
import { StopScanner } from "../stop-scanner.js";
import { documentedTools, type ToolCall, type ToolCallDelta } from "../tools.js";
import type {
  ChatMessage,
  ChoiceResult,
  Engine,
  FinishReason,
  GenerationRequest,
  GenerationResult,
  OutputConstraint,
  TextDetail,
  TokenLogprob,
} from "../types.js";
import { caughtUpOrAborted } from "../abort-watch.js";
import type { GrammarCache } from "./grammars.js";
import { snapshotKey, type PrefixSnapshotStore } from "./prefix-snapshots.js";
import { PromptAbandoned } from "./prompt-abandoned.js";
import { LockTurns } from "./lock-turns.js";
import { SequencePool, type Place } from "./sequence-pool.js";
import { DistributionPacer } from "./distribution-pacer.js";
import { labelsRoom, labelTokens, normalise, scoreLabels, type ScoredLabel } from "./label-scores.js";
import { draw, LogprobWriter, RAW_DISTRIBUTION, sampleWithProbabilities, seededRandom, type SampledToken } from "./logprob-sampler.js";
import { TokenDecoder } from "./token-decoder.js";
import { Utf8Guard } from "./utf8-guard.js";
import { toHistory, toolFunctions, toolGrammarFor, toolSchemaRules } from "./tool-history.js";
import { callSyntaxOf, callSyntaxSpecialTexts, ToolAnswerTracker, type CallSyntax } from "./tool-calls.js";
import { makeStateDirectory, removeStateDirectory } from "./state-directories.js";
import { tokensAtLeast } from "./tokens-at-least.js";

export interface EmbeddedEngineOptions {
  name: string;
  model: LlamaModel;
  context: LlamaContext;
  grammars: GrammarCache;
  /** Requests that may wait for a free sequence before new ones get 503. */
  maxQueue: number;
  /** Where system-prefix KV snapshots live; without it every sequence evaluates its own prefixes. */
  snapshots?: PrefixSnapshotStore | undefined;
  /** Shared by the engines of one runtime (one event loop); without it, the engine's own. */
  pacer?: DistributionPacer | undefined;
  /** What the model's KV state depends on (model file, adapter): part of every snapshot key. */
  identity?: string | undefined;
  /** Tokens of system prefixes remembered at most (default about a million). */
  rememberedPrefixTokens?: number | undefined;
  /** Prompt tokens evaluated per call while other requests hold sequences (default PROMPT_CHUNK_TOKENS; at most the context's batch). */
  promptChunkTokens?: number | undefined;
}

/** The formatted system prefix of a prompt: the tokens before the first user turn's content. */
interface SystemPrefix {
  tokens: Token[];
  key: string;
}

/** Counters for tests and metrics. */
export interface PromptCacheStats {
  /** Prompt tokens llama.cpp actually evaluated (snapshot builds included). */
  promptTokensEvaluated: number;
  /** Prefixes loaded from a snapshot into a sequence. */
  snapshotRestores: number;
  /** Prefixes evaluated and saved as a snapshot. */
  snapshotBuilds: number;
  /** Requests whose sequence already held their whole system prefix. */
  sequenceHits: number;
}

/**
 * Prefixes shorter than this are evaluated rather than snapshotted: loading is
 * cheaper even then (a 100-token state loads in a few ms, 20 tokens evaluate in
 * tens), but a handful of tokens is not worth a file.
 */
const MIN_SNAPSHOT_TOKENS = 16;
/**
 * Distinct system prompts whose prefix tokens are remembered, and the tokens
 * they may hold together (about 8 MB of arrays): callers choose the system
 * messages, so the memory is bounded by size, not only by count. Forgetting
 * costs only tokenizing a prompt again.
 */
const MAX_REMEMBERED_PREFIXES = 1024;
const MAX_REMEMBERED_PREFIX_TOKENS = 1 << 20;

/** A prompt brought into a sequence: the tokens still to evaluate, and how many came from the cache (reused or restored). */
interface Prepared {
  input: Token[];
  cached: number;
}

interface FormattedPrompt {
  tokens: Token[];
  /** The system prefix worth a snapshot, if any. */
  prefix: SystemPrefix | undefined;
  /** Whose cached state the prompt may reuse beyond `shareable` (GenerationRequest's cacheScope; undefined: anyone's). */
  scope?: string | undefined;
  /** Its leading tokens that a cache left by another scope may give it: the operator's own system prefix, or none. */
  shareable: number;
  /** Text stop triggers of the chat format (e.g. "### Human" for the fallback format). */
  stopStrings: string[];
  /** Single special tokens that end a turn in the chat format. */
  stopTokens: Set<Token>;
}

/**
 * Prompt tokens evaluated per call while other requests hold sequences. Their
 * generation shares each decode with a prompt chunk, so a smaller chunk lets
 * their streams go on while a long prompt is evaluated: with 128, a stream's
 * longest wait during a 1,500-token prompt was ~270 ms against ~970 ms with
 * llama.cpp's batch of 512 (bench/prefill-fairness.ts). A prompt alone is
 * evaluated a whole batch per call: 128-token calls cost it ~5% (bench/prompt-batches.ts).
 */
const PROMPT_CHUNK_TOKENS = 128;

/** One choice as generated, before the request's totals are added. */
interface ChoiceRun extends ChoiceResult {
  aborted: boolean;
  toolCalls?: ToolCall[] | undefined;
}

/** Several choices as one result: the first answers the single-choice fields, completion tokens are summed, and `choices` lists them all when there are several. */
function combinedResult(choices: ChoiceResult[], promptTokens: number, aborted: boolean): GenerationResult {
  const first = choices[0]!;
  return {
    text: first.text,
    finishReason: first.finishReason,
    logprobs: first.logprobs,
    promptTokens,
    completionTokens: choices.reduce((sum, c) => sum + c.completionTokens, 0),
    aborted,
    ...(choices.length > 1 ? { choices } : {}),
  };
}

interface LabelScoring {
  scored: ScoredLabel[];
  best: ScoredLabel;
  /** Each label's probability, normalised over the labels. */
  scores: Record<string, number>;
  withLogprobs: boolean;
}

/** Seeds llama.cpp takes: 32-bit, less 2^32 - 1, which it reads as "draw a random seed". */
const SEEDS = 2 ** 32 - 1;

/**
 * llama.cpp's sampler takes a 32-bit seed. Any integer a client sends maps onto
 * one (so -5 and 0 stay different, and -1 is a seed like the others); without
 * one, each request draws its own — node-llama-cpp's default (the current second)
 * would give every request in the same second the same "random" output.
 */
export function samplerSeed(seed: number | undefined): number {
  return seed === undefined ? Math.floor(Math.random() * SEEDS) : seedOf(seed);
}

/**
 * Choice `choice` of a request samples with seed + choice, summed on the mapped
 * seed: near 2^53 the sum in doubles rounds, and two choices would share a seed.
 */
export function choiceSeed(seed: number | undefined, choice: number): number {
  return seed === undefined ? samplerSeed(undefined) : (seedOf(seed) + choice) % SEEDS;
}

const seedOf = (seed: number): number => ((seed % SEEDS) + SEEDS) % SEEDS;

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
  private readonly callSyntax: CallSyntax;
  /** The control tokens the chat format's call syntax is written with: shown as text under a tool request, for the call parser. */
  private readonly callSyntaxTokens: ReadonlySet<Token>;
  private readonly pool: SequencePool<LlamaContextSequence>;
  private readonly running = new Set<Promise<unknown>>();
  /** Operations on a sequence's state take the context's lock in turn with generation (see LockTurns). */
  private readonly turns = new LockTurns();
  private readonly snapshots: PrefixSnapshotStore | undefined;
  private readonly pacer: DistributionPacer;
  private readonly identity: string;
  /** System prefixes by a hash of their messages, and the tokens they hold together. */
  private readonly prefixes = new Map<string, SystemPrefix | undefined>();
  private prefixTokens = 0;
  private readonly maxPrefixTokens: number;
  private readonly promptChunkTokens: number;
  private choiceStateDirectory: string | undefined;
  /** The scope whose prompts each sequence's cache holds (see claim); a sequence not in it holds nothing yet. */
  private readonly holders = new WeakMap<LlamaContextSequence, string | undefined>();
  private readonly counters: PromptCacheStats = { promptTokensEvaluated: 0, snapshotRestores: 0, snapshotBuilds: 0, sequenceHits: 0 };

  constructor(options: EmbeddedEngineOptions) {
    this.name = options.name;
    this.model = options.model;
    this.context = options.context;
    this.grammars = options.grammars;
    this.contextSize = options.context.contextSize;
    this.snapshots = options.snapshots;
    this.pacer = options.pacer ?? new DistributionPacer();
    this.identity = `${options.identity ?? options.name}\u0000context=${options.context.contextSize}`;
    this.maxPrefixTokens = options.rememberedPrefixTokens ?? MAX_REMEMBERED_PREFIX_TOKENS;
    this.promptChunkTokens = options.promptChunkTokens ?? PROMPT_CHUNK_TOKENS;
    // The GGUF's own chat template when it has one; otherwise a generic format.
    this.chatWrapper = resolveChatWrapper(options.model);
    const model = options.model;
    this.callSyntax = callSyntaxOf(this.chatWrapper, (text) => {
      const ends = model
        .tokenize(text, true)
        .filter((token) => model.isEogToken(token))
        .map((token) => text.indexOf(model.detokenize([token], true)))
        .filter((at) => at !== -1);
      return ends.length === 0 ? -1 : Math.min(...ends);
    });
    this.callSyntaxTokens = new Set(
      callSyntaxSpecialTexts(this.chatWrapper)
        .flatMap((text) => model.tokenize(text, true))
        .filter((token) => model.isSpecialToken(token) && !model.isEogToken(token)),
    );
    // At load rather than on the first request under a grammar, which would wait for it.
    Utf8Guard.prepare(options.model);
    const sequences = Array.from({ length: options.context.totalSequences }, () => options.context.getSequence());
    this.pool = new SequencePool(sequences, options.maxQueue);
  }

  get parallel(): number {
    return this.context.totalSequences;
  }
  get queued(): number {
    return this.pool.queued;
  }
  /** Sequences generating right now. */
  get busy(): number {
    return this.context.totalSequences - this.pool.available;
  }
  get promptCache(): Readonly<PromptCacheStats> {
    return { ...this.counters };
  }
  /** Times a generation reading distributions waited for plain ones (shared by the engines of one runtime). */
  get distributionWaits(): number {
    return this.pacer.waited;
  }
  /** Grammars compiled and kept (shared by the engines of one llama.cpp runtime). */
  get grammarsCached(): number {
    return this.grammars.entries;
  }
  /** System prefixes remembered (by their messages' hash) and the tokens they hold. */
  get rememberedPrefixes(): { count: number; tokens: number } {
    return { count: this.prefixes.size, tokens: this.prefixTokens };
  }

  /** Length in tokens of the system prefix a snapshot would cover for these messages (0 when none would). */
  snapshotPrefixLength(messages: readonly ChatMessage[]): number {
    return this.systemPrefix(messages)?.tokens.length ?? 0;
  }

  /**
   * Makes sure the system prefix of `messages` has a snapshot, evaluating it now
   * if none has one yet (at start-up, so a specialist's first request evaluates
   * only its own turn). "none" when these messages have no prefix worth a
   * snapshot or snapshots are off.
   */
  async prefill(messages: readonly ChatMessage[], signal: AbortSignal = new AbortController().signal): Promise<"built" | "present" | "none"> {
    const prefix = this.systemPrefix(messages);
    const snapshots = this.snapshots;
    if (prefix === undefined || snapshots === undefined) return "none";
    // Prefilled prefixes are the specialists' own: kept before any a caller's system prompt brought.
    snapshots.pin(prefix.key);
    if (snapshots.has(prefix.key)) return "present";
    const prompt: FormattedPrompt = { tokens: prefix.tokens, prefix, shareable: prefix.tokens.length, stopStrings: [], stopTokens: new Set() };
    const sequence = await this.pool.acquire(signal, (free) => this.pickSequence(free, prompt));
    try {
      await this.claim(sequence, prompt);
      const before = this.counters.snapshotBuilds;
      await this.placePrefix(sequence, prefix, snapshots, signal);
      return this.counters.snapshotBuilds > before ? "built" : "present";
    } finally {
      this.pool.release(sequence);
    }
  }

  /** Token count of messages as this engine formats them (used by tests and metering checks). */
  countPromptTokens(messages: readonly ChatMessage[]): number {
    return this.format(messages).tokens.length;
  }

  /** The tokens of messages as this engine formats them. */
  promptTokens(messages: readonly ChatMessage[]): Token[] {
    return this.tokenize(messages);
  }

  async generate(request: GenerationRequest): Promise<GenerationResult> {
    const tools = request.tools;
    const contextSize = Math.min(this.contextSize, request.contextLimit ?? Infinity);
    const abandoned = (): GenerationResult => ({ text: "", promptTokens: 0, completionTokens: 0, finishReason: "stop", aborted: true });
    let place: Place<LlamaContextSequence>;
    try {
      // Its place in the queue from arrival, before its grammar is built: the build counts against the queue's
      // bound, and a request that came later with nothing to build does not overtake it.
      place = this.pool.reserve(request.signal);
    } catch (error) {
      if (request.signal.aborted) return abandoned();
      throw error;
    }
    let grammar: LlamaGrammar | undefined;
    let prompt: FormattedPrompt;
    try {
      // The grammar first: a schema it cannot hold is refused (400) before node-llama-cpp documents the tools with it.
      // A caller's schema, tools and system prompt are remembered for its own scope only (see GrammarCache).
      const scope = request.cacheScope;
      grammar =
        tools === undefined
          ? await this.grammars.get(request.constraint, request.constraintIsOperators === true ? undefined : scope)
          : await toolGrammarFor(this.grammars, this.callSyntax, tools, scope);
      if (request.shownTools !== undefined) await toolSchemaRules(this.grammars, request.shownTools);
      const documented = documentedTools(request);
      prompt = this.scoped(
        documented === undefined
          ? this.format(request.messages, contextSize, request.systemIsOperators === true ? undefined : scope)
          : this.formatWithTools(request.messages, toolFunctions(documented), contextSize),
        request,
      );
      if (prompt.tokens.length >= contextSize) {
        throw errors.contextLengthExceeded(prompt.tokens.length, contextSize, "messages");
      }
      if (tools === undefined && request.constraint.type === "labels") this.checkLabelsFit(prompt, request.constraint.labels, contextSize);
    } catch (error) {
      place.cancel();
      throw error;
    }
    let sequence: LlamaContextSequence;
    try {
      sequence = await place.take((free) => this.pickSequence(free, prompt));
    } catch (error) {
      if (request.signal.aborted) return abandoned();
      throw error;
    }
    request.onStarted?.();
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      this.pool.release(sequence);
    };
    const run = this.serve(sequence, release, prompt, contextSize, request, grammar);
    this.running.add(run);
    try {
      return await run;
    } finally {
      this.running.delete(run);
      release();
    }
  }

  /**
   * Every label is scored after the whole prompt, so the longest must fit after it: past the
   * context's end node-llama-cpp would shift the context, erasing the prompt's start (its
   * instructions), and the labels would be scored on what is left of it.
   */
  private checkLabelsFit(prompt: FormattedPrompt, labels: readonly string[], contextSize: number): void {
    const { longest, room } = labelsRoom(this.model, labels);
    if (prompt.tokens.length + room > contextSize) {
      throw errors.contextLengthExceeded(prompt.tokens.length, contextSize, "messages", `its longest label (${longest} tokens)`);
    }
  }

  /** Generates every choice of a request on its first sequence (and, for several choices, on more). */
  private async serve(
    sequence: LlamaContextSequence,
    release: () => void,
    prompt: FormattedPrompt,
    contextSize: number,
    request: GenerationRequest,
    grammar: LlamaGrammar | undefined,
  ): Promise<GenerationResult> {
    try {
      const { input, cached } = await this.prepare(sequence, prompt, request.signal);
      const constraint = request.constraint;
      if (request.tools === undefined && constraint.type === "labels") {
        await this.evaluatePrompt(sequence, input.slice(0, -1), request.signal);
        const last = input.slice(-1);
        const scoring = await this.scoreLabels(sequence, last[0]!, constraint.labels, request);
        if (scoring === undefined) return { text: "", promptTokens: prompt.tokens.length, completionTokens: 0, finishReason: "stop", aborted: true };
        return { ...this.chosenLabels(scoring, prompt, request), labelScores: scoring.scores, cachedPromptTokens: cached };
      }
      return { ...(await this.generateChoices(sequence, release, input, prompt, contextSize, request, grammar)), cachedPromptTokens: cached };
    } catch (error) {
      if (!(error instanceof PromptAbandoned)) throw error;
      // Metered with the prompt tokens the sequence holds: those evaluated (or reused) before the cut.
      const promptTokens = sequence.compareContextTokens(prompt.tokens).firstDifferentIndex;
      return { text: "", promptTokens, completionTokens: 0, finishReason: "stop", aborted: true };
    }
  }

  /** Generates the request's choices from the prompt's remaining input: on this sequence, and for several choices on more. */
  private async generateChoices(
    sequence: LlamaContextSequence,
    release: () => void,
    input: Token[],
    prompt: FormattedPrompt,
    contextSize: number,
    request: GenerationRequest,
    grammar: LlamaGrammar | undefined,
  ): Promise<GenerationResult> {
    const n = request.choices ?? 1;
    const grammarState = (): LlamaGrammarEvaluationState | undefined =>
      grammar === undefined ? undefined : new LlamaGrammarEvaluationState({ model: this.model, grammar });
    if (n === 1) {
      // Aborted before any of it was evaluated: metered as an abandoned prompt, like one cut between chunks.
      if (request.signal.aborted) throw new PromptAbandoned();
      const only = await this.runChoice(sequence, input, prompt, contextSize, request, grammarState(), 0);
      return { ...only, promptTokens: prompt.tokens.length, aborted: only.aborted };
    }
    // The prompt is evaluated once, here; the other choices' sequences load its state instead of evaluating it.
    const last = input.slice(-1);
    await this.evaluatePrompt(sequence, input.slice(0, -1), request.signal);
    const statePath = this.choiceStatePath();
    try {
      // Inside the try: a save that fails part-way (a full disk) leaves no partial file behind either.
      await this.turns.take(() => sequence.saveStateToFile(statePath));
      // Settled, not raced: a failing choice must not leave the others running unseen while the state file is removed.
      const settled = await Promise.allSettled(
        Array.from({ length: n }, async (_, index) => {
          if (index === 0) {
            try {
              return await this.runChoice(sequence, last, prompt, contextSize, request, grammarState(), 0);
            } finally {
              // Free for the choices (or requests) waiting as soon as this choice ends.
              release();
            }
          }
          return this.otherChoice(statePath, last, prompt, contextSize, request, grammarState(), index);
        }),
      );
      const failed = settled.find((r) => r.status === "rejected");
      if (failed !== undefined) throw failed.reason;
      const choices = settled.map((r) => (r as PromiseFulfilledResult<ChoiceRun>).value);
      this.counters.promptTokensEvaluated += n - 1;
      return combinedResult(
        choices.map(({ text, completionTokens, finishReason, logprobs }) => ({ text, completionTokens, finishReason, logprobs })),
        prompt.tokens.length,
        choices.some((c) => c.aborted),
      );
    } finally {
      await rm(statePath, { force: true });
    }
  }

  /**
   * A choice after the first: takes a sequence as a request would (waiting when
   * none is free, never while holding another), loads the prompt's state unless
   * the sequence holds the prompt already, generates and gives the sequence back.
   */
  private async otherChoice(
    statePath: string,
    last: Token[],
    prompt: FormattedPrompt,
    contextSize: number,
    request: GenerationRequest,
    grammarState: LlamaGrammarEvaluationState | undefined,
    index: number,
  ): Promise<ChoiceRun> {
    let sequence: LlamaContextSequence;
    try {
      // Part of a request already admitted: it waits its turn but does not count against the queue's bound.
      sequence = await this.pool.acquire(request.signal, (free) => this.pickSequence(free, prompt), false);
    } catch (error) {
      if (request.signal.aborted) return { text: "", completionTokens: 0, finishReason: "stop", aborted: true };
      throw error;
    }
    try {
      await this.claim(sequence, prompt);
      const shared = prompt.tokens.length - 1;
      if (sequence.compareContextTokens(prompt.tokens).firstDifferentIndex >= shared) {
        await this.reusePrefix(sequence, prompt.tokens, shared);
      } else {
        await this.loadState(sequence, statePath);
      }
      return await this.runChoice(sequence, last, prompt, contextSize, request, grammarState, index);
    } finally {
      this.pool.release(sequence);
    }
  }

  private choiceStatePath(): string {
    // The snapshots' directory when there is one (removed with it); else one of our own, removed at close.
    this.choiceStateDirectory ??= this.snapshots?.directory ?? makeStateDirectory("alveare-choices-");
    return join(this.choiceStateDirectory, `choices-${randomUUID()}.state`);
  }

  private async runChoice(
    sequence: LlamaContextSequence,
    input: Token[],
    prompt: FormattedPrompt,
    contextSize: number,
    request: GenerationRequest,
    grammarEvaluationState: LlamaGrammarEvaluationState | undefined,
    choice: number,
  ): Promise<ChoiceRun> {
    const maxTokens = Math.min(request.maxTokens, contextSize - prompt.tokens.length);
    const decoder = new TokenDecoder(this.model, request.tools === undefined ? undefined : this.callSyntaxTokens);
    // Under a tool request the caller's stop strings end a text answer only (the tracker applies them), never a call.
    const scanner = new StopScanner(request.tools === undefined ? [...prompt.stopStrings, ...request.stop] : prompt.stopStrings);
    const onText = request.onText;
    const writer = request.topLogprobs === undefined ? undefined : new LogprobWriter(this.model, request.topLogprobs);
    const logprobs: TokenLogprob[] = [];
    // Entry i's token starts at decoder.starts[i] in the decoded text: `text`, of which the content is a prefix.
    const starts = decoder.starts;
    const onToolCall = request.onToolCall;
    // Entries before `sent` were carried by streamed pieces; the rest wait for the text they start (held by the decoder,
    // the stop scanner or the tool tracker).
    let sent = 0;
    /**
     * A stop string ends the content where it starts: the entries describe the content, so those of tokens whose text
     * starts there or after (wholly the stop string's) go; a token that straddles the cut keeps its entry.
     */
    const dropStopEntries = (): void => {
      const end = scanner.stopped ? text.length : tracker?.stopped === true ? tracker.contentLength : undefined;
      if (end === undefined) return;
      let keep = logprobs.length;
      while (keep > 0 && starts[keep - 1]! >= end) keep--;
      logprobs.length = keep;
    };
    /** The next piece's detail: the entries not sent yet of tokens whose text starts before `upTo` (the content sent so far). */
    const detail = (upTo: number): TextDetail => {
      if (writer === undefined) return { choice };
      dropStopEntries();
      const from = sent;
      while (sent < logprobs.length && starts[sent]! < upTo) sent++;
      return { choice, logprobs: logprobs.slice(from, sent) };
    };
    const send = (piece: string): void => onText?.(piece, detail(tracker === undefined ? text.length : tracker.contentLength));
    // A call's pieces are no content: they carry every entry so far, the call syntax's included.
    const sendCall = (delta: ToolCallDelta): void => onToolCall?.(delta, detail(Infinity));
    // Under a tool request the text is the call syntax: the tracker turns it into content or tool calls.
    const tracker =
      request.tools === undefined
        ? undefined
        : new ToolAnswerTracker(
            this.callSyntax,
            request.tools.parallel,
            onText === undefined ? undefined : send,
            onToolCall === undefined ? undefined : sendCall,
            new StopScanner(request.stop),
          );
    let text = "";
    const emit = (piece: string): void => {
      if (piece.length === 0) return;
      text += piece;
      if (tracker === undefined) send(piece);
      else tracker.push(piece);
    };
    let completionTokens = 0;
    let finishReason: FinishReason = "stop";
    let aborted = request.signal.aborted;
    if (!aborted) {
      // A long prompt's whole chunks first, abandonably; the last chunk goes with the first token, as before.
      input = await this.evaluatePromptHead(sequence, input, request.signal);
      const seed = choiceSeed(request.seed, choice);
      const options = { temperature: request.temperature, topP: request.topP, seed };
      // Under a grammar the bytes stay valid UTF-8, so the characters it counts are the text's.
      const utf8 = grammarEvaluationState === undefined ? undefined : Utf8Guard.for(this.model);
      // The native sampler yields bare tokens; with log-probabilities each token comes with its distribution.
      const tokens: AsyncIterable<Token | SampledToken> =
        writer === undefined
          ? sequence.evaluate(input, { ...options, grammarEvaluationState, ...(utf8 === undefined ? {} : { tokenBias: utf8.bias }) })
          : sampleWithProbabilities(this.model, sequence, input, {
              ...options,
              grammar: grammarEvaluationState,
              allows: utf8?.allows,
              pace: (readMs) => this.pacer.afterRead(readMs, request.signal),
            });
      const paced = this.pacer.begin(writer !== undefined);
      try {
        for await (const item of tokens) {
          const token = typeof item === "number" ? item : item.token;
          const probabilities = typeof item === "number" ? undefined : item.probabilities;
          completionTokens++;
          utf8?.accept(token);
          if (prompt.stopTokens.has(token)) break;
          if (writer !== undefined && probabilities !== undefined) logprobs.push(writer.entry(token, probabilities, completionTokens === 1));
          emit(scanner.push(decoder.push(token)));
          if (scanner.stopped || tracker?.stopped === true) break;
          // Nor while another request waits for the context's lock (to erase, load or save a sequence).
          const pause = this.turns.pause;
          if (pause !== undefined) await paced.idle(pause);
          // The next token is not asked for while the client has not taken the text already sent.
          const behind = request.whenWritable?.();
          if (behind !== undefined) await paced.idle(caughtUpOrAborted(behind, request.signal));
          if (request.signal.aborted) {
            aborted = true;
            break;
          }
          if (completionTokens >= maxTokens) {
            finishReason = "length";
            break;
          }
        }
      } finally {
        paced.end();
      }
    }
    if (!scanner.stopped) emit(scanner.push(decoder.flush()) + scanner.flush());
    dropStopEntries();
    // Entries no piece carried (control tokens after the last text) reach a streaming client on a last empty piece.
    if (sent < logprobs.length && tracker === undefined) onText?.("", detail(Infinity));
    const withLogprobs = writer === undefined ? {} : { logprobs };
    if (tracker !== undefined) {
      const answer = tracker.finish();
      const calls = answer.toolCalls.length > 0;
      // The call syntax after the last piece reported (a call's suffix, a section's end) rides on a last empty piece.
      if (sent < logprobs.length) {
        if (calls) sendCall({ index: answer.toolCalls.length - 1, arguments: "" });
        else onText?.("", detail(Infinity));
      }
      return {
        ...withLogprobs,
        text: answer.content,
        completionTokens,
        aborted,
        finishReason: calls && finishReason === "stop" ? "tool_calls" : finishReason,
        ...(calls ? { toolCalls: answer.toolCalls } : {}),
      };
    }
    // A JSON answer whose closing token came as max_tokens ran out is whole, not cut: its grammar allows nothing after
    // it but whitespace. (A number at the top could still have grown, so it stays "length".)
    if (finishReason === "length" && grammarEvaluationState !== undefined && isJsonConstraint(request.constraint) && isWholeJson(text)) {
      finishReason = "stop";
    }
    return { ...withLogprobs, text, completionTokens, finishReason, aborted };
  }

  /**
   * A labels output: every label scored by the model's probability of its full
   * token sequence after the prompt (teacher-forced), normalised over the labels.
   */
  private async scoreLabels(
    sequence: LlamaContextSequence,
    lastPromptToken: Token,
    labels: readonly string[],
    request: GenerationRequest,
  ): Promise<LabelScoring | undefined> {
    const writer = request.topLogprobs === undefined ? undefined : new LogprobWriter(this.model, request.topLogprobs);
    // A single label is certain: nothing to weigh it against, so nothing is evaluated unless its log-probabilities are asked for.
    if (labels.length === 1 && writer === undefined) {
      const only: ScoredLabel = { label: labels[0]!, tokens: labelTokens(this.model, labels[0]!), logprob: 0, entries: [] };
      return { scored: [only], best: only, scores: { [only.label]: 1 }, withLogprobs: false };
    }
    const scored = await scoreLabels(this.model, sequence, lastPromptToken, labels, writer, request.signal, this.turns);
    if (scored === undefined) return undefined;
    this.counters.promptTokensEvaluated += scored.reduce((sum, s) => sum + Math.max(0, s.tokens.length - 1), 0);
    const probabilities = normalise(scored.map((s) => s.logprob));
    let best = 0;
    probabilities.forEach((p, i) => {
      if (p > probabilities[best]!) best = i;
    });
    return {
      scored,
      best: scored[best]!,
      scores: Object.fromEntries(scored.map((s, i) => [s.label, probabilities[i]!])),
      withLogprobs: writer !== undefined,
    };
  }

  /**
   * Each choice's label, from the labels' scores: at temperature 0 the most
   * probable; otherwise drawn from the scores as the token sampler draws a
   * token (the 40 most probable, top-p, then temperature; choice i with seed
   * + i, as generated choices). So an answer is always a label with its own
   * score, the same for every way the model could spell it, and nothing more
   * is generated once the labels are scored.
   */
  private chosenLabels(scoring: LabelScoring, prompt: FormattedPrompt, request: GenerationRequest): GenerationResult {
    const n = request.choices ?? 1;
    const ranked = scoring.scored
      .map((label) => [label, scoring.scores[label.label] ?? 0] as const)
      .sort((a, b) => b[1] - a[1] || (a[0] === scoring.best ? -1 : b[0] === scoring.best ? 1 : 0));
    const choices = Array.from({ length: n }, (_, index) => {
      const random = seededRandom(choiceSeed(request.seed, index));
      const label = draw(ranked, request.temperature, request.topP, random) ?? scoring.best;
      return this.labelChoice(label, request, index, scoring.withLogprobs);
    });
    return combinedResult(choices, prompt.tokens.length, request.signal.aborted);
  }

  /** The chosen label as a choice: cut at max_tokens or a stop string like generated text would be. */
  private labelChoice(label: ScoredLabel, request: GenerationRequest, choice: number, withLogprobs: boolean): ChoiceResult {
    const length = label.tokens.length > request.maxTokens;
    const tokens = length ? label.tokens.slice(0, request.maxTokens) : label.tokens;
    const scanner = new StopScanner(request.stop);
    let text = scanner.push(length ? this.model.detokenize(tokens) : label.label);
    if (!scanner.stopped) text += scanner.flush();
    // Cut by a stop string, the label counts the tokens a generation would have produced (up to the one that
    // completes the stop string), and reports log-probabilities for those whose text starts in the answer, as generated text does.
    const produced = scanner.stopped ? this.tokensUntilStop(tokens, request.stop) : tokens.length;
    const described = scanner.stopped ? this.tokensStartingBefore(tokens, text.length) : tokens.length;
    const logprobs = withLogprobs ? label.entries.slice(0, described) : undefined;
    request.onText?.(text, { choice, ...(logprobs === undefined ? {} : { logprobs }) });
    return {
      text,
      completionTokens: produced,
      finishReason: length && !scanner.stopped ? "length" : "stop",
      ...(logprobs === undefined ? {} : { logprobs }),
    };
  }

  /** How many of `tokens`, decoded one by one as runChoice decodes generated ones, a stop string leaves: through the one that completes it (all when none does). */
  private tokensUntilStop(tokens: readonly Token[], stop: readonly string[]): number {
    const decoder = new TokenDecoder(this.model);
    const scanner = new StopScanner(stop);
    for (const [i, token] of tokens.entries()) {
      scanner.push(decoder.push(token));
      if (scanner.stopped) return i + 1;
    }
    return tokens.length;
  }

  /** How many of `tokens`, decoded one by one as runChoice decodes generated ones, start before character `end` of their text. */
  private tokensStartingBefore(tokens: readonly Token[], end: number): number {
    const decoder = new TokenDecoder(this.model);
    for (const token of tokens) decoder.push(token);
    decoder.flush();
    return decoder.starts.filter((start) => start < end).length;
  }

  /**
   * The next-token probabilities (temperature 1, no truncation) after the prompt,
   * reached the way generate() reaches it: same sequence choice, same snapshot
   * and cache reuse. Lets tests compare a restored prefix with a fresh evaluation.
   */
  async nextTokenProbabilities(messages: readonly ChatMessage[], signal: AbortSignal = new AbortController().signal): Promise<Map<Token, number>> {
    const prompt = this.format(messages);
    const sequence = await this.pool.acquire(signal, (free) => this.pickSequence(free, prompt));
    try {
      const { input } = await this.prepare(sequence, prompt, signal);
      const last = input.length - 1;
      const items: ControlledEvaluateInputItem[] = input.map((token, i) =>
        i === last ? [token, { generateNext: { probabilities: true, options: RAW_DISTRIBUTION } }] : token,
      );
      const output = await sequence.controlledEvaluate(items);
      const probabilities = output[last]?.next.probabilities;
      if (probabilities === undefined) throw new Error("llama.cpp returned no probabilities");
      return probabilities;
    } finally {
      this.pool.release(sequence);
    }
  }

  /**
   * Which free sequence to take, as llama.cpp's server picks a slot: the one
   * whose cache shares the longest prefix with the prompt, unless none holds the
   * whole system prefix and a snapshot can supply it, in which case the least
   * recently used one (its cache is the least likely to be wanted again).
   */
  private pickSequence(free: readonly LlamaContextSequence[], prompt: FormattedPrompt): number {
    let best = 0;
    let bestShared = -1;
    free.forEach((sequence, i) => {
      const cached = sequence.compareContextTokens(prompt.tokens).firstDifferentIndex;
      const shared = this.holders.get(sequence) === prompt.scope ? cached : Math.min(cached, prompt.shareable);
      if (shared > bestShared) {
        best = i;
        bestShared = shared;
      }
    });
    const snapshotHelps = this.snapshots !== undefined && prompt.prefix !== undefined && bestShared < prompt.prefix.tokens.length;
    return snapshotHelps ? 0 : best;
  }

  /**
   * Evaluates prompt tokens without generating, a chunk (promptChunk) at a
   * time: other sequences' streams go on between chunks; a request aborted
   * meanwhile (its client gone, the drain's deadline) stops at the next chunk
   * with PromptAbandoned, rather than holding its sequence, and the engine's
   * other requests, for the whole prompt; and an operation waiting for the
   * context's lock (another request's erase, load or save) gets it between
   * chunks, as it does between generated tokens.
   */
  private async evaluatePrompt(sequence: LlamaContextSequence, tokens: readonly Token[], signal: AbortSignal): Promise<void> {
    // Checked even with nothing to evaluate (the prompt all in the cache), so every path meters an abort alike.
    if (signal.aborted) throw new PromptAbandoned();
    for (let at = 0, chunk = this.promptChunk; at < tokens.length; at += chunk, chunk = this.promptChunk) {
      await this.evaluateChunk(sequence, tokens.slice(at, at + chunk), signal);
    }
  }

  /**
   * Evaluates the whole chunks of `input` but the last (see evaluatePrompt) and
   * returns the rest, 1 to a chunk's worth of tokens, to be evaluated with the
   * first generated token: a prompt of one chunk or less is untouched, so no
   * decode is added.
   */
  private async evaluatePromptHead(sequence: LlamaContextSequence, input: Token[], signal: AbortSignal): Promise<Token[]> {
    let at = 0;
    for (let chunk = this.promptChunk; input.length - at > chunk; at += chunk, chunk = this.promptChunk) {
      await this.evaluateChunk(sequence, input.slice(at, at + chunk), signal);
    }
    return at === 0 ? input : input.slice(at);
  }

  /**
   * Prompt tokens for the next evaluation call: the context's whole batch while
   * no other request holds a sequence (a prompt alone is evaluated fastest so),
   * else PROMPT_CHUNK_TOKENS (or the option), so the others' streams go on.
   */
  private get promptChunk(): number {
    const alone = this.busy <= 1;
    return Math.max(1, alone ? this.context.batchSize : Math.min(this.context.batchSize, this.promptChunkTokens));
  }

  private async evaluateChunk(sequence: LlamaContextSequence, tokens: Token[], signal: AbortSignal): Promise<void> {
    const pause = this.turns.pause;
    if (pause !== undefined) await pause;
    if (signal.aborted) throw new PromptAbandoned();
    await sequence.evaluateWithoutGeneratingNewTokens(tokens);
  }

  /**
   * Brings the sequence to the longest usable prefix of the prompt that the prompt's scope
   * may reuse (its own cache, else the system prefix's snapshot) and returns the tokens
   * still to evaluate, with how many of the prompt's came from the cache.
   */
  private async prepare(sequence: LlamaContextSequence, prompt: FormattedPrompt, signal: AbortSignal): Promise<Prepared> {
    await this.claim(sequence, prompt);
    const prefix = prompt.prefix;
    const snapshots = this.snapshots;
    const prefixEvaluated = prefix !== undefined && snapshots !== undefined ? await this.placePrefix(sequence, prefix, snapshots, signal) : 0;
    // At least one token is always evaluated, for its logits.
    const input = await this.reusePrefix(sequence, prompt.tokens, prompt.tokens.length - 1);
    this.counters.promptTokensEvaluated += input.length;
    return { input, cached: prompt.tokens.length - input.length - prefixEvaluated };
  }

  /**
   * Makes the sequence the prompt's scope's before it is used: what another scope's requests left in its cache is
   * erased but for the tokens this prompt may share with them (the operator's system prefix), so no account can
   * tell from how fast its prompt is evaluated what another one sent (OpenAI scopes its prompt cache likewise).
   */
  private async claim(sequence: LlamaContextSequence, prompt: FormattedPrompt): Promise<void> {
    if (this.holders.get(sequence) === prompt.scope) return;
    const keep = Math.min(sequence.compareContextTokens(prompt.tokens).firstDifferentIndex, prompt.shareable);
    if (keep < sequence.nextTokenIndex) {
      await this.turns.take(() => sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]));
    }
    // Only once erased: a failed erase leaves the sequence another scope's.
    this.holders.set(sequence, prompt.scope);
  }

  /** Puts the system prefix into the sequence: already there, loaded from its snapshot, or evaluated (and snapshotted). */
  private async placePrefix(
    sequence: LlamaContextSequence,
    prefix: SystemPrefix,
    snapshots: PrefixSnapshotStore,
    signal: AbortSignal,
  ): Promise<number> {
    let evaluated = 0;
    if (sequence.compareContextTokens(prefix.tokens).firstDifferentIndex >= prefix.tokens.length) {
      this.counters.sequenceHits++;
    } else {
      const placed = await snapshots.place(prefix.key, prefix.tokens.length, {
        load: (path) => this.loadState(sequence, path),
        evaluate: async () => {
          const rest = await this.reusePrefix(sequence, prefix.tokens, prefix.tokens.length);
          // Abandoned part-way, it throws: no snapshot is saved of a prefix not whole.
          await this.evaluatePrompt(sequence, rest, signal);
          this.counters.promptTokensEvaluated += rest.length;
          evaluated = rest.length;
        },
        save: async (path) => (await this.turns.take(() => sequence.saveStateToFile(path))).fileSize,
        signal,
      });
      if (placed === "restored") this.counters.snapshotRestores++;
      else if (placed === "built") this.counters.snapshotBuilds++;
    }
    return evaluated;
  }

  /** Replaces the sequence's cache with a saved state, emptied first so that a failed load leaves it consistent (empty). */
  private loadState(sequence: LlamaContextSequence, path: string): Promise<void> {
    return this.turns.take(async () => {
      await sequence.eraseContextTokenRanges([{ start: 0, end: sequence.nextTokenIndex }]);
      await sequence.loadStateFromFile(path, { acceptRisk: true });
    });
  }

  /**
   * Keeps the sequence's cached tokens that `tokens` starts with (a specialist's
   * system prompt, earlier chat turns), at most `maxKeep`, erases the rest and
   * returns the tokens that still need evaluating.
   */
  private async reusePrefix(sequence: LlamaContextSequence, tokens: Token[], maxKeep: number): Promise<Token[]> {
    const keep = Math.min(sequence.compareContextTokens(tokens).firstDifferentIndex, maxKeep);
    if (keep < sequence.nextTokenIndex) {
      await this.turns.take(() => sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]));
    }
    return tokens.slice(keep);
  }

  /**
   * The tokens of the leading system messages as formatted, up to where the
   * user's content starts: the common token prefix of the conversation formatted
   * with two different user messages (robust to any chat template). Remembered under
   * `scope` when the system messages are a caller's: formatting them twice takes
   * milliseconds for a long prompt, so another account's entry would tell, by how
   * fast it came, that the same prompt was sent.
   */
  private systemPrefix(messages: readonly ChatMessage[], refresh = false, scope?: string): SystemPrefix | undefined {
    let count = 0;
    while (messages[count]?.role === "system") count++;
    if (count === 0) return undefined;
    const system = messages.slice(0, count);
    const rememberedAs = createHash("sha256")
      .update(scope === undefined ? "" : `${scope}\u0000`)
      .update(JSON.stringify(system))
      .digest("base64");
    if (refresh && this.prefixes.has(rememberedAs)) {
      this.prefixTokens -= this.prefixes.get(rememberedAs)?.tokens.length ?? 0;
      this.prefixes.delete(rememberedAs);
    }
    if (this.prefixes.has(rememberedAs)) {
      const known = this.prefixes.get(rememberedAs);
      // Re-inserted: a Map iterates in insertion order, so the first entry is the least recently used.
      this.prefixes.delete(rememberedAs);
      this.prefixes.set(rememberedAs, known);
      return known;
    }
    const a = this.tokenize([...system, { role: "user", content: "a" }]);
    const b = this.tokenize([...system, { role: "user", content: "Z" }]);
    let shared = 0;
    while (shared < a.length && shared < b.length && a[shared] === b[shared]) shared++;
    const tokens = a.slice(0, shared);
    const prefix = tokens.length >= MIN_SNAPSHOT_TOKENS ? { tokens, key: snapshotKey(this.identity, tokens) } : undefined;
    const held = prefix?.tokens.length ?? 0;
    this.prefixes.set(rememberedAs, prefix);
    this.prefixTokens += held;
    // Least recently used out first, so one caller's many prompts do not flush the specialists' own.
    for (const [key, old] of this.prefixes) {
      if (this.prefixes.size <= MAX_REMEMBERED_PREFIXES && this.prefixTokens <= this.maxPrefixTokens) break;
      this.prefixes.delete(key);
      this.prefixTokens -= old?.tokens.length ?? 0;
    }
    return prefix;
  }

  /**
   * The prompt's tokens with the tools documented, as generate() formats it: the documentation is
   * node-llama-cpp's TypeScript-like rendering of each schema (an array's item type may be written
   * out once per item), so no bound from the schemas' JSON holds. Undefined without tools, or when they cannot
   * be documented (generate() refuses them with a 400).
   */
  promptTokensWithTools(request: GenerationRequest): number | undefined {
    const documented = documentedTools(request);
    if (documented === undefined) return undefined;
    try {
      return this.formatWithTools(request.messages, toolFunctions(documented), this.contextSize).tokens.length;
    } catch {
      // Certainly over the context (refused in `generate`) or unformattable: the reservation's own bound, which the
      // context caps, stands.
      return undefined;
    }
  }

  /** A prompt that documents the tools; not snapshotted (its system prefix holds the tool documentation). */
  private formatWithTools(messages: readonly ChatMessage[], functions: ChatModelFunctions, contextSize: number): FormattedPrompt {
    return { ...this.formatChat(messages, functions, contextSize), prefix: undefined, shareable: 0 };
  }

  /**
   * With `contextSize`, a prompt certainly over it is refused before it is tokenized whole (see formatChat).
   * `scope`: whose remembered system prefixes it may use (see systemPrefix); absent, anyone's.
   */
  private format(messages: readonly ChatMessage[], contextSize?: number, scope?: string): FormattedPrompt {
    const { tokens, stopStrings, stopTokens } = this.formatChat(messages, undefined, contextSize);
    // A prompt that cannot fit is refused: its system messages are neither tokenized again nor remembered.
    const prefix = tokens.length < (contextSize ?? this.contextSize) ? this.prefixOf(messages, tokens, scope) : undefined;
    return { tokens, prefix, shareable: prefix?.tokens.length ?? 0, stopStrings, stopTokens };
  }

  /**
   * The remembered system prefix, only when the prompt really starts with it. A chat template may write the date
   * (Llama 3.1's "Today Date"): after midnight the remembered tokens are yesterday's, and used as they were every
   * request would load a stale snapshot and evaluate its system prompt again, until a restart. Such a prefix is
   * formatted again (its snapshot built anew, and pinned if the old one was); one that still differs (a tokenizer
   * that merges the prefix's last token with this user's first) serves this prompt without a snapshot.
   */
  private prefixOf(messages: readonly ChatMessage[], tokens: readonly Token[], scope: string | undefined): SystemPrefix | undefined {
    const remembered = this.systemPrefix(messages, false, scope);
    if (remembered === undefined) return undefined;
    const shared = sharedLength(tokens, remembered.tokens);
    if (shared === remembered.tokens.length) return remembered;
    // Only the last token differs: this user's text merged with it, nothing changed; formatting again would not help.
    if (shared === remembered.tokens.length - 1) return undefined;
    const fresh = this.systemPrefix(messages, true, scope);
    if (fresh === undefined || !startsWith(tokens, fresh.tokens)) return undefined;
    if (fresh.key !== remembered.key) this.snapshots?.repin(remembered.key, fresh.key);
    return fresh;
  }

  /**
   * The prompt as its request's scope may use the cache: a system prefix with something of the caller's in it
   * (their own system message, tools) is shared with no other scope, its snapshot included.
   */
  private scoped(prompt: FormattedPrompt, request: GenerationRequest): FormattedPrompt {
    const scope = request.cacheScope;
    if (scope === undefined) return prompt;
    if (request.systemIsOperators === true) return { ...prompt, scope };
    const prefix = prompt.prefix && { ...prompt.prefix, key: createHash("sha256").update(`${prompt.prefix.key}\u0000${scope}`).digest("hex") };
    return { ...prompt, scope, prefix, shareable: 0 };
  }

  private tokenize(messages: readonly ChatMessage[]): Token[] {
    return this.formatChat(messages).tokens;
  }

  /**
   * With `contextSize`, a prompt certainly over it is refused from its text, slice by slice, before it is tokenized
   * whole: llama.cpp does that in time quadratic in its length for text it spells in bytes (a megabyte of CJK held
   * the event loop for a minute). The text is the prompt as the chat template writes it, not the request's: the
   * tools' documentation (up to ~128 KiB) is in it, and replayed tool-call arguments are re-serialized compactly
   * (a pretty-printed or \u-escaped original could count several times the tokens the prompt has).
   */
  private formatChat(
    messages: readonly ChatMessage[],
    functions?: ChatModelFunctions,
    contextSize?: number,
  ): Omit<FormattedPrompt, "prefix" | "scope" | "shareable"> {
    const history: ChatHistoryItem[] = toHistory(messages);
    // An open model turn at the end asks the wrapper for the generation prompt; after tool
    // results the model's own turn (its calls and their results) stays open and continues.
    const last = history.at(-1);
    const continuesAfterResults = last?.type === "model" && messages.at(-1)?.role === "tool";
    if (!continuesAfterResults) history.push({ type: "model", response: [] });
    const state = this.chatWrapper.generateContextState({
      chatHistory: history,
      ...(functions === undefined ? {} : { availableFunctions: functions, documentFunctionParams: true }),
    });
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
    if (contextSize !== undefined) {
      // Its plain text only (special tokens add to it): a lower bound of the whole.
      const texts = state.contextText.values.filter((v): v is string => typeof v === "string");
      const atLeast = tokensAtLeast((text) => this.model.tokenize(text, false, "trimLeadingSpace").length, texts, contextSize);
      if (atLeast !== undefined) throw errors.contextLengthExceeded(`at least ${atLeast}`, contextSize, "messages");
    }
    return { tokens: state.contextText.tokenize(this.model.tokenizer), stopStrings, stopTokens };
  }

  /** Rejects queued requests, lets running ones end (their signals are aborted by the caller), frees the context. */
  async close(): Promise<void> {
    this.pool.drain(errors.notServing("shutting_down", 1));
    await Promise.allSettled([...this.running]);
    await this.context.dispose();
    if (this.snapshots === undefined && this.choiceStateDirectory !== undefined) removeStateDirectory(this.choiceStateDirectory);
  }
}

/** How many of `prefix`'s tokens `tokens` begins with. */
function sharedLength(tokens: readonly Token[], prefix: readonly Token[]): number {
  let i = 0;
  while (i < prefix.length && i < tokens.length && tokens[i] === prefix[i]) i++;
  return i;
}

const startsWith = (tokens: readonly Token[], prefix: readonly Token[]): boolean => sharedLength(tokens, prefix) === prefix.length;

const isJsonConstraint = (constraint: OutputConstraint): boolean => constraint.type === "json_object" || constraint.type === "json_schema";

/** Whether `text` is one whole JSON value that no further character could extend (a number could). */
function isWholeJson(text: string): boolean {
  try {
    return typeof JSON.parse(text) !== "number";
  } catch {
    return false;
  }
}
