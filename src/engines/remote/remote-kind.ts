import type { Engine, EngineFactory } from "../types.js";
import { RemoteEngine } from "./remote-engine.js";

/** One OpenAI-compatible server that can serve a specialist. */
export interface Upstream {
  baseUrl: string;
  /** The upstream's own model name. */
  model: string;
  /** Name of the environment variable that holds the upstream's API key. */
  apiKeyEnv?: string | undefined;
}

/** A specialist served by other servers. */
export interface RemoteEngineConfig {
  kind: "remote";
  /** One or more interchangeable upstreams; requests go to the least busy healthy one. */
  upstreams: Upstream[];
  connectTimeoutMs: number;
  /** Idle time: the longest wait for the answer's headers or its next bytes. */
  readTimeoutMs: number;
  /** The longest an answer may take in all, from sending the request to its last byte, however steadily bytes come. */
  answerTimeoutMs: number;
  healthCheckIntervalMs: number;
}

/** One RemoteEngine per distinct upstream setting, shared by the specialists that name it. */
export const remoteEngines: EngineFactory<RemoteEngineConfig> = {
  kind: "remote",
  start(users, environment) {
    const bySetting = new Map<string, RemoteEngine>();
    const engines = new Map<string, Engine>();
    for (const user of users) {
      const setting = JSON.stringify(user.engine);
      let engine = bySetting.get(setting);
      if (engine === undefined) {
        engine = new RemoteEngine(user.engine, environment.logger.child({ component: "remote-engine" }));
        bySetting.set(setting, engine);
      }
      // A key variable named but not set is a deployment slip: said at start, not only as each request's 401.
      for (const { apiKeyEnv, baseUrl } of user.engine.upstreams) {
        if (apiKeyEnv !== undefined && !process.env[apiKeyEnv]) {
          environment.logger.warn(
            { specialist: user.id, upstream: baseUrl, api_key_env: apiKeyEnv },
            `${apiKeyEnv} (the api_key_env of specialist ${user.id}) is not set: requests to ${baseUrl} go without a key`,
          );
        }
      }
      engines.set(user.id, engine);
    }
    return Promise.resolve({
      engines,
      close: async () => {
        for (const engine of bySetting.values()) await engine.close();
      },
    });
  },
};
