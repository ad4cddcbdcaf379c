import { closest } from "../closest-name.js";
import type { ServerConfig } from "./config.js";

/** Every ALVEARE_* variable the server reads. */
const SERVER_VARIABLES = [
  "ALVEARE_PORT",
  "ALVEARE_HOST",
  "ALVEARE_DATA_DIR",
  "ALVEARE_MODEL",
  "ALVEARE_CONFIG",
  "ALVEARE_DATABASE_URL",
  "ALVEARE_REDIS_URL",
  "ALVEARE_REDIS_PREFIX",
  "ALVEARE_LOG_LEVEL",
  "ALVEARE_LOG_FORMAT",
  "ALVEARE_THREADS",
  "ALVEARE_ADMIN_TOKEN",
  "ALVEARE_METRICS_PORT",
  "ALVEARE_METRICS_HOST",
  "ALVEARE_TRUST_PROXY",
  "ALVEARE_PUBLIC_URL",
  "ALVEARE_DRAIN_SECONDS",
  "ALVEARE_AUDIT_RETENTION_DAYS",
  "ALVEARE_NODE_LEASE_SECONDS",
  "ALVEARE_REQUEST_TIMEOUT_MS",
  "ALVEARE_HEADERS_TIMEOUT_MS",
  "ALVEARE_MAX_CONNECTIONS",
  "ALVEARE_STREAM_STALL_MS",
];
/** Read by the SDKs, not the server: set beside it on a developer's machine, and not a mistake. */
const SDK_VARIABLES = ["ALVEARE_API_KEY", "ALVEARE_BASE_URL", "ALVEARE_LOG"];

export interface UnknownVariable {
  name: string;
  /** The server's variable it most likely means, when one is a slip of a few letters away. */
  didYouMean?: string | undefined;
}

/**
 * The ALVEARE_* variables in `env` that nothing reads: a misspelt setting (ALVEARE_DRAIN_SECOND) is
 * otherwise silently the default. The SDKs' variables and the upstream keys the config names
 * (api_key_env, which an operator may well call ALVEARE_…) are known too.
 */
export function unknownVariables(env: NodeJS.ProcessEnv, config: Pick<ServerConfig, "specialists">): UnknownVariable[] {
  const known = new Set([...SERVER_VARIABLES, ...SDK_VARIABLES]);
  for (const specialist of config.specialists) {
    if (specialist.engine.kind !== "remote") continue;
    for (const upstream of specialist.engine.upstreams) if (upstream.apiKeyEnv !== undefined) known.add(upstream.apiKeyEnv);
  }
  return (
    Object.keys(env)
      // ALVEARE_TEST_*: this repository's test suite's own (which database and Redis it uses).
      .filter((name) => name.startsWith("ALVEARE_") && !name.startsWith("ALVEARE_TEST_") && !known.has(name))
      .sort()
      .map((name) => ({ name, didYouMean: closest(name, SERVER_VARIABLES) }))
  );
}
