import { statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import type { Logger } from "pino";
import type { Engine } from "../types.js";
import { DistributionPacer } from "./distribution-pacer.js";
import { EmbeddedEngine } from "./embedded-engine.js";
import { EmbeddedEmbedder } from "./embeddings.js";
import { GrammarCache } from "./grammars.js";
import { PrefixSnapshotStore } from "./prefix-snapshots.js";
import { sampleFirstAlone } from "./first-sample-alone.js";
import { usePhaseThreads } from "./phase-threads.js";
import { fastestPerPhase, measureThreads, type ThreadChoice } from "./thread-calibration.js";
import { closeEach } from "../close-each.js";

interface EngineRequest {
  modelPath: string;
  lora?: { path: string; scale: number } | undefined;
  contextSize: number;
}

interface RuntimeOptions {
  parallel: number;
  queue: number;
  threads: number | "auto";
  logger: Logger;
  /** Disk (and page cache) the system-prefix snapshots may use together; 0 turns them off. */
  prefixSnapshotBytes?: number | undefined;
}

/** Enough for dozens of 1,500-token prefixes of a 0.5B model (about 18 MB each). */
const DEFAULT_PREFIX_SNAPSHOT_BYTES = 512 * 1024 * 1024;

/**
 * What a context's KV state depends on: the model's and adapter's files (path,
 * size, modification time) and the adapter's scale. A snapshot made under one
 * identity is never loaded under another.
 */
export function engineIdentity(modelPath: string, lora?: { path: string; scale: number }): string {
  const file = (path: string): string => {
    const s = statSync(path);
    return `${path}\u0000${s.size}\u0000${s.mtimeMs}`;
  };
  return [file(modelPath), lora === undefined ? "" : `${file(lora.path)}\u0000${lora.scale}`].join("\u0001");
}

/**
 * Owns llama.cpp in this process: each model file is loaded once and shared by
 * every specialist that names it; each (model, adapter) pair gets one context
 * with `parallel` sequences, wrapped in an EmbeddedEngine.
 */
export class LlamaRuntime {
  private readonly models = new Map<string, Promise<LlamaModel>>();
  private readonly engines = new Map<string, Promise<EmbeddedEngine>>();
  private readonly threadChoice = new Map<string, Promise<ThreadChoice>>();
  private readonly embedders = new Map<string, Promise<EmbeddedEmbedder>>();
  private grammars: GrammarCache | undefined;
  private readonly snapshots: PrefixSnapshotStore | undefined;
  /** One event loop for every engine: a generation reading distributions yields to all of theirs. */
  private readonly pacer = new DistributionPacer();

  private constructor(
    private readonly llama: Llama,
    private readonly options: RuntimeOptions,
  ) {
    const budget = options.prefixSnapshotBytes ?? DEFAULT_PREFIX_SNAPSHOT_BYTES;
    if (budget > 0) this.snapshots = new PrefixSnapshotStore(budget, options.logger.child({ component: "prefix-snapshots" }));
  }

  static async create(options: RuntimeOptions): Promise<LlamaRuntime> {
    const log = options.logger.child({ component: "llama.cpp" });
    const llama = await getLlama({
      gpu: false,
      build: "never",
      progressLogs: false,
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (text.length === 0) return;
        if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) log.error(text);
        else log.debug(text);
      },
    });
    return new LlamaRuntime(llama, options);
  }

  loadModel(path: string): Promise<LlamaModel> {
    let model = this.models.get(path);
    if (model === undefined) {
      model = this.llama.loadModel({ modelPath: path, gpuLayers: 0 });
      this.models.set(path, model);
    }
    return model;
  }

  /** Requests with the same key get the same engine (the first one's context size decides). */
  static engineKey(request: Pick<EngineRequest, "modelPath" | "lora">): string {
    return `${request.modelPath}\u0000${request.lora?.path ?? ""}\u0000${request.lora?.scale ?? 1}`;
  }

  engine(request: EngineRequest): Promise<EmbeddedEngine> {
    const key = LlamaRuntime.engineKey(request);
    let engine = this.engines.get(key);
    if (engine === undefined) {
      engine = this.createEngine(request);
      this.engines.set(key, engine);
    }
    return engine;
  }

  /** The embeddings of a model file, one embedder per file and context size; the model is shared with its engines. */
  embedder(modelPath: string, contextSize: number): Promise<EmbeddedEmbedder> {
    const key = `${modelPath}\u0000${contextSize}`;
    let embedder = this.embedders.get(key);
    if (embedder === undefined) {
      embedder = (async () => {
        const model = await this.loadModel(modelPath);
        // Embedding is all prompt processing: it runs on the prompt phase's thread count.
        const threads = (await this.threadsFor(modelPath, model)).prompt;
        return new EmbeddedEmbedder(model, contextSize, threads, modelPath);
      })();
      this.embedders.set(key, embedder);
    }
    return embedder;
  }

  private async createEngine(request: EngineRequest): Promise<EmbeddedEngine> {
    const identity = engineIdentity(request.modelPath, request.lora);
    const model = await this.loadModel(request.modelPath);
    const threads = await this.threadsFor(request.modelPath, model);
    const context = await model.createContext({
      contextSize: request.contextSize,
      sequences: this.options.parallel,
      // The most either phase uses: node-llama-cpp never grants a batch more than this.
      threads: Math.max(threads.decode, threads.prompt),
      ...(request.lora ? { lora: { adapters: [{ filePath: request.lora.path, scale: request.lora.scale }] } } : {}),
    });
    const name = `embedded:${request.modelPath}${request.lora ? `+${request.lora.path}` : ""}`;
    // Allowed (a model may be stretched on purpose), but said: past the trained length answers degrade, and the
    // memory of the whole context is reserved for every specialist on this model. It was accepted without a word.
    if (model.trainContextSize > 0 && request.contextSize > model.trainContextSize) {
      this.options.logger.warn(
        { engine: name, context_size: request.contextSize, trained_context_size: model.trainContextSize },
        "a specialist's context_size is longer than its model was trained for",
      );
    }
    // Several sequences share a batch's outputs: see sampleFirstAlone.
    if (this.options.parallel > 1 && !sampleFirstAlone(context)) {
      this.options.logger.warn({ engine: name }, "cannot order this node-llama-cpp's samples: concurrent requests may read each other's outputs");
    }
    const perPhase = threads.prompt !== threads.decode && usePhaseThreads(context, threads);
    // Without per-phase switching the context runs everything on the larger count.
    const decodeThreads = threads.prompt === threads.decode || perPhase ? threads.decode : Math.max(threads.decode, threads.prompt);
    this.options.logger.info(
      {
        engine: name,
        threads: decodeThreads,
        promptThreads: threads.prompt,
        parallel: this.options.parallel,
        contextSize: context.contextSize,
      },
      "engine ready",
    );
    return new EmbeddedEngine({
      name,
      model,
      context,
      grammars: (this.grammars ??= new GrammarCache(this.llama)),
      maxQueue: this.options.queue,
      snapshots: this.snapshots,
      pacer: this.pacer,
      identity,
    });
  }

  /**
   * Builds the KV snapshot of every specialist's system prefix now, while the
   * server is still loading, so that no request pays for evaluating it: a
   * specialist's first request evaluates only its own turn. Logs what the
   * snapshots take against their budget.
   */
  async prepareSystemPrompts(specialists: readonly { engine: Engine; systemPrompt: string }[]): Promise<void> {
    const snapshots = this.snapshots;
    if (snapshots === undefined) return;
    const started = performance.now();
    let built = 0;
    for (const { engine, systemPrompt } of specialists) {
      if (!(engine instanceof EmbeddedEngine) || systemPrompt.length === 0) continue;
      if ((await engine.prefill([{ role: "system", content: systemPrompt }])) === "built") built++;
    }
    this.options.logger.info(
      {
        built,
        snapshots: snapshots.size,
        totalBytes: snapshots.totalBytes,
        budgetBytes: snapshots.budget,
        ms: Math.round(performance.now() - started),
      },
      "system prompt snapshots ready",
    );
  }

  /**
   * The configured thread count for both phases, or the fastest measured for this
   * model: for decoding at the configured parallelism, and for prompt processing.
   */
  private threadsFor(modelPath: string, model: LlamaModel): Promise<ThreadChoice> {
    const configured = this.options.threads;
    if (configured !== "auto") return Promise.resolve({ decode: configured, prompt: configured });
    let choice = this.threadChoice.get(modelPath);
    if (choice === undefined) {
      choice = (async () => {
        const cores = Math.min(availableParallelism(), 8);
        const candidates = [...new Set([1, Math.max(1, Math.floor(cores / 2)), cores])];
        const measured = await measureThreads(model, candidates, this.options.parallel);
        const best = fastestPerPhase(measured);
        this.options.logger.info(
          { model: modelPath, measured, threads: best.decode, promptThreads: best.prompt },
          "chose llama.cpp thread count by measurement",
        );
        return best;
      })();
      this.threadChoice.set(modelPath, choice);
    }
    return choice;
  }

  async close(): Promise<void> {
    const engines = await Promise.allSettled([...this.engines.values()]);
    const embedders = await Promise.allSettled([...this.embedders.values()]);
    // All at once: each refuses its queue first, then waits for its running requests. One after another, a second
    // engine's queue went on being served until the first engine's answers had ended.
    await closeEach([...engines, ...embedders].flatMap((e) => (e.status === "fulfilled" ? [e.value] : [])));
    this.embedders.clear();
    const models = await Promise.allSettled([...this.models.values()]);
    for (const m of models) if (m.status === "fulfilled") await m.value.dispose();
    this.engines.clear();
    this.models.clear();
    this.snapshots?.close();
    await this.llama.dispose();
  }
}
