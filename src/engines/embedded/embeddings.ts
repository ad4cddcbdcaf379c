import type { LlamaEmbeddingContext, LlamaModel } from "node-llama-cpp";
import { errors } from "../../errors.js";
import type { Engine } from "../types.js";
import { tokensAtLeast } from "./tokens-at-least.js";

export interface EmbeddingResult {
  /** One unit-length vector per input, in input order. */
  vectors: number[][];
  /** Tokens evaluated over all inputs (what a caller is metered for). */
  promptTokens: number;
  /** Cut short by the request's signal: `vectors` and `promptTokens` cover the inputs embedded before it. */
  aborted?: boolean;
}

/** Turns texts into vectors: what an `embeddings` specialist is served by. */
export interface Embedder {
  readonly name: string;
  /** Length of the vectors it returns. */
  readonly dimensions: number;
  /** Throws 400 naming `input` before any work when an input does not fit the context. */
  embed(inputs: readonly string[], signal: AbortSignal): Promise<EmbeddingResult>;
  close(): Promise<void>;
}

/** Scales a vector to unit length (a zero vector stays zero), as OpenAI's embeddings are. */
export function normalise(vector: readonly number[]): number[] {
  let sum = 0;
  for (const x of vector) sum += x * x;
  const norm = Math.sqrt(sum);
  return norm === 0 ? [...vector] : vector.map((x) => x / norm);
}

/**
 * The embeddings of a model loaded in this process, through node-llama-cpp's
 * embedding context (its own small context: generation contexts are not
 * opened in embeddings mode). The context is created on first use, so servers
 * that never embed pay nothing for it.
 */
export class EmbeddedEmbedder implements Embedder {
  readonly name: string;
  readonly dimensions: number;
  private context: Promise<LlamaEmbeddingContext> | undefined;
  /** Embeddings under way: closing waits for them, as engines wait for their generations, before disposing the context. */
  private readonly running = new Set<Promise<EmbeddingResult>>();

  constructor(
    private readonly model: LlamaModel,
    private readonly contextSize: number,
    private readonly threads: number,
    modelPath: string,
  ) {
    this.name = `embedded-embeddings:${modelPath}`;
    this.dimensions = model.embeddingVectorSize;
  }

  /** Embedding requests under way. */
  get inFlight(): number {
    return this.running.size;
  }

  async embed(inputs: readonly string[], signal: AbortSignal): Promise<EmbeddingResult> {
    const work = this.embedEach(inputs, signal);
    this.running.add(work);
    try {
      return await work;
    } finally {
      this.running.delete(work);
    }
  }

  private async embedEach(inputs: readonly string[], signal: AbortSignal): Promise<EmbeddingResult> {
    const context = await (this.context ??= this.model.createEmbeddingContext({ contextSize: this.contextSize, threads: this.threads }));
    // Every input is measured first: a batch either fits entirely or is refused without work. One far over the
    // context is found slice by slice, never tokenized whole (quadratic in llama.cpp for text it spells in bytes),
    // and the batch is refused at the first input over it: the others, however many, are not measured.
    const lengths = inputs.map((text, index) => {
      const atLeast = tokensAtLeast((slice) => this.model.tokenize(slice, false, "trimLeadingSpace").length, [text], this.contextSize);
      if (atLeast !== undefined) throw errors.embeddingInputTooLong(index, inputs.length, `at least ${atLeast}`, this.contextSize);
      const length = context.calculateInputLength(text);
      if (length >= this.contextSize) throw errors.embeddingInputTooLong(index, inputs.length, length, this.contextSize);
      return length;
    });
    const vectors: number[][] = [];
    let promptTokens = 0;
    for (const [index, text] of inputs.entries()) {
      if (signal.aborted) return { vectors, promptTokens, aborted: true };
      vectors.push(normalise((await context.getEmbeddingFor(text)).vector));
      promptTokens += lengths[index]!;
    }
    return { vectors, promptTokens };
  }

  async close(): Promise<void> {
    // A drain's deadline aborts their signals, so they end within an input.
    await Promise.allSettled(this.running);
    const context = this.context;
    this.context = undefined;
    if (context !== undefined) await (await context.catch(() => undefined))?.dispose();
  }
}

/**
 * The generation side of an embeddings specialist: there is none. The routes
 * refuse such a specialist before admission; this only guards other callers.
 */
export function embeddingsOnly(id: string): Engine {
  return {
    name: `embeddings-only:${id}`,
    generate: () => Promise.reject(errors.invalidParameter("model", `'${id}' serves embeddings only: call POST /v1/embeddings.`)),
    close: () => Promise.resolve(),
  };
}
