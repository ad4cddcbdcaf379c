import { embeddedEngines } from "./embedded/embedded-kind.js";
import { remoteEngines } from "./remote/remote-kind.js";
import type { EngineFactory } from "./types.js";

/**
 * Every kind of engine, by the `kind` tag of its configuration. A new kind is
 * one file exporting its config type and factory, and one line here.
 */
export const engineKinds = {
  embedded: embeddedEngines,
  remote: remoteEngines,
} as const;

type ConfigOf<Factory> = Factory extends EngineFactory<infer Config> ? Config : never;

/** How a specialist is served: `{ kind: "embedded", … } | { kind: "remote", … }`. */
export type EngineConfig = ConfigOf<(typeof engineKinds)[keyof typeof engineKinds]>;
