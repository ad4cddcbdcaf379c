import type { Embedder } from "../engines/embedded/embeddings.js";
import type { Engine, OutputConstraint } from "../engines/types.js";

export interface SamplingDefaults {
  maxTokens: number;
  temperature: number;
  topP: number;
}

/** One OpenAI-compatible server that can serve a specialist. */
export interface Upstream {
  baseUrl: string;
  /** The upstream's own model name. */
  model: string;
  /** Name of the environment variable that holds the upstream's API key. */
  apiKeyEnv?: string | undefined;
}

/** Where a specialist's tokens come from when other servers serve it. */
export interface RemoteTarget {
  /** One or more interchangeable upstreams; requests go to the least busy healthy one. */
  upstreams: Upstream[];
  connectTimeoutMs: number;
  readTimeoutMs: number;
  healthCheckIntervalMs: number;
}

/** A specialist as configuration: everything that makes a task model out of a base model. */
export interface SpecialistDefinition {
  id: string;
  description: string;
  /** A name from the config's `models` table, or a path / hf: URI. */
  model: string;
  lora?: { path: string; scale: number } | undefined;
  systemPrompt: string;
  output: OutputConstraint;
  defaults: SamplingDefaults;
  contextSize: number;
  remote?: RemoteTarget | undefined;
  /** "embeddings": served on POST /v1/embeddings only; absent for generating specialists. */
  kind?: "embeddings" | undefined;
}

/** A specialist bound to the engine that serves it. */
export interface Specialist extends SpecialistDefinition {
  engine: Engine;
  /** Present exactly when kind is "embeddings". */
  embedder?: Embedder | undefined;
}
