import type { Logger } from "pino";
import type { ServerConfig } from "../config/config.js";
import { LlamaRuntime } from "../engines/embedded/llama-runtime.js";
import { RemoteEngine } from "../engines/remote/remote-engine.js";
import { embeddingsOnly } from "../engines/embedded/embeddings.js";
import type { Engine } from "../engines/types.js";
import { progressBar, resolveModel } from "../models/model-files.js";
import type { Specialist, SpecialistDefinition } from "./specialist.js";

/**
 * The specialists the server offers, each bound to its engine. Specialists that
 * name the same model file (and adapter) share one loaded model and one engine.
 */
export class SpecialistRegistry {
  private readonly byId: Map<string, Specialist>;

  private constructor(specialists: Specialist[], private readonly runtime: LlamaRuntime | undefined, private readonly engines: Engine[]) {
    this.byId = new Map(specialists.map((s) => [s.id, s]));
  }

  static async create(config: ServerConfig, logger: Logger): Promise<SpecialistRegistry> {
    const embedded = config.specialists.filter((s) => s.remote === undefined);
    const runtime = embedded.length > 0
      ? await LlamaRuntime.create({ ...config.engine, logger })
      : undefined;
    try {
      const paths = new Map<string, string>();
      const locationOf = (s: SpecialistDefinition): string => (Object.hasOwn(config.models, s.model) ? config.models[s.model]! : s.model);
      for (const s of embedded) {
        const location = locationOf(s);
        if (!paths.has(location)) paths.set(location, await resolveModel(location, config.dataDir, progressBar()));
      }
      const pathOf = (s: SpecialistDefinition): string => paths.get(locationOf(s)) ?? s.model;
      const engineKey = (s: SpecialistDefinition): string => `${pathOf(s)}\u0000${s.lora?.path ?? ""}\u0000${s.lora?.scale ?? 1}`;
      // A shared context must hold the longest context any of its specialists asks for.
      const contextSizes = new Map<string, number>();
      for (const s of embedded) if (s.kind !== "embeddings") contextSizes.set(engineKey(s), Math.max(contextSizes.get(engineKey(s)) ?? 0, s.contextSize));

      const remotes = new Map<string, RemoteEngine>();
      const specialists: Specialist[] = [];
      for (const s of config.specialists) {
        let engine: Engine;
        if (s.kind === "embeddings") {
          specialists.push({ ...s, engine: embeddingsOnly(s.id), embedder: await runtime!.embedder(pathOf(s), s.contextSize) });
          continue;
        } else if (s.remote !== undefined) {
          const key = JSON.stringify(s.remote);
          engine = remotes.get(key) ?? new RemoteEngine(s.remote);
          remotes.set(key, engine as RemoteEngine);
        } else {
          engine = await runtime!.engine({ modelPath: pathOf(s), lora: s.lora, contextSize: contextSizes.get(engineKey(s)) ?? s.contextSize });
        }
        specialists.push({ ...s, engine });
      }
      const engines = [...new Set(specialists.map((s) => s.engine))];
      return new SpecialistRegistry(specialists, runtime, engines);
    } catch (error) {
      await runtime?.close();
      throw error;
    }
  }

  get(id: string): Specialist | undefined {
    return this.byId.get(id);
  }

  list(): Specialist[] {
    return [...this.byId.values()];
  }

  async close(): Promise<void> {
    // Embedded engines belong to the runtime, which closes them with their models.
    for (const engine of this.engines) if (engine instanceof RemoteEngine) await engine.close();
    await this.runtime?.close();
  }
}
