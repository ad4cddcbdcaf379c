import { ConfigError } from "../../config/config-error.js";
import { progressBar, resolveModel } from "../../models/model-files.js";
import type { Engine, EngineFactory, EngineUser } from "../types.js";
import { embeddingsOnly, type Embedder } from "./embeddings.js";
import { EmbeddedEngine } from "./embedded-engine.js";
import { labelsRoom } from "./label-scores.js";
import { LlamaRuntime } from "./llama-runtime.js";

/** A specialist served by llama.cpp in this process. */
export interface EmbeddedEngineConfig {
  kind: "embedded";
  /** A name from the config's `models` table, or a path / hf: URI. */
  model: string;
  lora?: { path: string; scale: number } | undefined;
}

/**
 * Starts one llama.cpp runtime for all embedded specialists. Specialists that
 * name the same model file (and adapter) share one loaded model and one engine,
 * whose context holds the longest context any of them asks for. An embeddings
 * specialist gets an embedder on its model (sharing the loaded model) and an
 * engine that refuses to generate.
 */
export const embeddedEngines: EngineFactory<EmbeddedEngineConfig> = {
  kind: "embedded",
  async start(users, { settings, models, dataDir, logger }) {
    const runtime = await LlamaRuntime.create({ ...settings, logger });
    try {
      const locationOf = ({ engine }: EngineUser<EmbeddedEngineConfig>): string =>
        Object.hasOwn(models, engine.model) ? models[engine.model]! : engine.model;
      const paths = new Map<string, string>();
      for (const user of users) {
        const location = locationOf(user);
        if (!paths.has(location)) paths.set(location, await resolveModel(location, dataDir, progressBar()));
      }
      const requestOf = (user: EngineUser<EmbeddedEngineConfig>) => ({ modelPath: paths.get(locationOf(user))!, lora: user.engine.lora });
      const contextSizes = new Map<string, number>();
      const generating = users.filter((user) => user.kind !== "embeddings");
      for (const user of generating) {
        const key = LlamaRuntime.engineKey(requestOf(user));
        contextSizes.set(key, Math.max(contextSizes.get(key) ?? 0, user.contextSize));
      }
      const engines = new Map<string, Engine>();
      const embedders = new Map<string, Embedder>();
      for (const user of users) {
        const request = requestOf(user);
        if (user.kind === "embeddings") {
          engines.set(user.id, embeddingsOnly(user.id));
          embedders.set(user.id, await runtime.embedder(request.modelPath, user.contextSize));
          continue;
        }
        engines.set(user.id, await runtime.engine({ ...request, contextSize: contextSizes.get(LlamaRuntime.engineKey(request))! }));
      }
      for (const user of generating) checkSystemPromptFits(user, engines.get(user.id)!);
      await runtime.prepareSystemPrompts(generating.map((user) => ({ engine: engines.get(user.id)!, systemPrompt: user.systemPrompt ?? "" })));
      // The runtime closes its engines and embedders with their models.
      return { engines, embedders, close: () => runtime.close() };
    } catch (error) {
      await runtime.close();
      throw error;
    }
  },
};

/**
 * A specialist whose system prompt fills its context by itself could answer nothing: every request
 * would be refused as too long. Refused at start-up, naming what to change, rather than served.
 */
function checkSystemPromptFits(user: EngineUser<EmbeddedEngineConfig>, engine: Engine): void {
  if (!(engine instanceof EmbeddedEngine) || !user.systemPrompt) return;
  // With an empty user turn after it, and room for one token of answer (a label set: its longest label): the least any request needs.
  const tokens = engine.countPromptTokens([
    { role: "system", content: user.systemPrompt },
    { role: "user", content: "" },
  ]);
  const labels = user.output?.type === "labels" ? labelsRoom(engine.model, user.output.labels) : undefined;
  if (tokens + (labels?.room ?? 1) <= user.contextSize) return;
  const room = labels === undefined ? "an answer" : `its longest label (${labels.longest} tokens)`;
  throw new ConfigError(
    `specialists.${user.id}.system_prompt`,
    `it is ${tokens} tokens as the model formats it (with an empty user turn), which leaves no room for ${room} in the specialist's context of ${user.contextSize} tokens: ` +
      `shorten it or raise specialists.${user.id}.context_size`,
  );
}
