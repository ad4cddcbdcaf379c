import type { Logger } from "pino";
import type { ServerConfig } from "../config/config.js";
import { closeEach } from "../engines/close-each.js";
import { engineKinds, type EngineConfig } from "../engines/engine-kinds.js";
import type { EngineFactory, StartedEngines } from "../engines/types.js";
import type { Specialist } from "./specialist.js";

/** The specialists the server offers, each bound to the engine its kind started for it. */
export class SpecialistRegistry {
  private readonly byId: Map<string, Specialist>;

  private constructor(
    specialists: Specialist[],
    private readonly started: readonly StartedEngines[],
  ) {
    this.byId = new Map(specialists.map((s) => [s.id, s]));
  }

  static async create(config: ServerConfig, logger: Logger): Promise<SpecialistRegistry> {
    const environment = { settings: config.engine, models: config.models, dataDir: config.dataDir, logger };
    const factories: readonly EngineFactory<EngineConfig>[] = Object.values(engineKinds);
    const started: StartedEngines[] = [];
    try {
      for (const factory of factories) {
        const users = config.specialists.filter((s) => s.engine.kind === factory.kind);
        if (users.length > 0) started.push(await factory.start(users, environment));
      }
      const specialists = config.specialists.map((s): Specialist => {
        const engine = started.map((kind) => kind.engines.get(s.id)).find((e) => e !== undefined);
        if (engine === undefined) throw new Error(`no engine was started for specialist '${s.id}'`);
        if (s.kind !== "embeddings") return { ...s, engine };
        const embedder = started.map((kind) => kind.embedders?.get(s.id)).find((e) => e !== undefined);
        if (embedder === undefined) throw new Error(`no embedder was started for embeddings specialist '${s.id}'`);
        return { ...s, engine, embedder };
      });
      return new SpecialistRegistry(specialists, started);
    } catch (error) {
      await closeAll(started);
      throw error;
    }
  }

  get(id: string): Specialist | undefined {
    return this.byId.get(id);
  }

  list(): Specialist[] {
    return [...this.byId.values()];
  }

  close(): Promise<void> {
    return closeAll(this.started);
  }
}

/** Every kind at once (see closeEach): a remote kind's queue is refused while the embedded answers end, not after. */
const closeAll = (started: readonly StartedEngines[]): Promise<void> => closeEach(started);
