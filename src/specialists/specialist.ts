import type { EngineConfig } from "../engines/engine-kinds.js";
import type { Engine, OutputConstraint } from "../engines/types.js";

export interface SamplingDefaults {
  maxTokens: number;
  temperature: number;
  topP: number;
}

/** A specialist as configuration: everything that makes a task model out of a base model. */
export interface SpecialistDefinition {
  id: string;
  description: string;
  systemPrompt: string;
  output: OutputConstraint;
  defaults: SamplingDefaults;
  contextSize: number;
  /** What serves it, tagged by kind. */
  engine: EngineConfig;
}

/** A specialist bound to the engine that serves it. */
export interface Specialist extends Omit<SpecialistDefinition, "engine"> {
  engine: Engine;
}
