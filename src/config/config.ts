import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { SpecialistDefinition } from "../specialists/specialist.js";
import { ConfigError } from "./config-error.js";
import { isFields, numberAt, objectAt, onlyKeys, stringAt, type Fields } from "./fields.js";
import { parseSpecialists } from "./specialists-config.js";
import { parsePlans, type Plan } from "../gate/plans.js";

export const DEFAULT_MODEL_URI = "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf";
export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export interface EngineSettings {
  /** Sequences decoded together per loaded model (parallel slots). */
  parallel: number;
  /** Requests that may wait for a slot before new ones get 503. */
  queue: number;
  /** llama.cpp threads; "auto" measures at start-up. */
  threads: number | "auto";
}

/** How long a client may take to send a request, and how many connections may be open at once. */
export interface HttpLimits {
  /** ALVEARE_REQUEST_TIMEOUT_MS: headers and body, from the first byte; the response is not limited. */
  requestTimeoutMs: number;
  /** ALVEARE_HEADERS_TIMEOUT_MS: the headers alone; never more than the request timeout. */
  headersTimeoutMs: number;
  /** ALVEARE_MAX_CONNECTIONS: further connections are closed as they arrive. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, maxConnections: 512 };

export function httpLimitsFrom(env: Env): HttpLimits {
  const requestTimeoutMs = intFrom(env.ALVEARE_REQUEST_TIMEOUT_MS, "ALVEARE_REQUEST_TIMEOUT_MS", 100, 3_600_000) ?? DEFAULT_HTTP_LIMITS.requestTimeoutMs;
  const headersTimeoutMs = intFrom(env.ALVEARE_HEADERS_TIMEOUT_MS, "ALVEARE_HEADERS_TIMEOUT_MS", 100, 3_600_000) ?? DEFAULT_HTTP_LIMITS.headersTimeoutMs;
  return {
    requestTimeoutMs,
    headersTimeoutMs: Math.min(headersTimeoutMs, requestTimeoutMs),
    maxConnections: intFrom(env.ALVEARE_MAX_CONNECTIONS, "ALVEARE_MAX_CONNECTIONS", 1, 1_000_000) ?? DEFAULT_HTTP_LIMITS.maxConnections,
  };
}

export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  logLevel: string;
  bodyLimit: number;
  http: HttpLimits;
  /** ALVEARE_ADMIN_TOKEN: enables the operator's API; from the environment only, never a file. */
  adminToken?: string | undefined;
  engine: EngineSettings;
  /** Model names to paths or hf: URIs; `base` is the default model every default specialist uses. */
  models: Record<string, string>;
  specialists: SpecialistDefinition[];
  plans: Record<string, Plan>;
}

/** Command-line flags of `alveare serve`; absent ones fall through to env, file, defaults. */
export interface ServeFlags {
  port?: string | undefined;
  host?: string | undefined;
  dataDir?: string | undefined;
  model?: string | undefined;
  config?: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

function readConfigFile(path: string): Fields {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError("--config", `cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, `not valid JSON: ${(error as Error).message}`);
  }
  if (!isFields(parsed)) throw new ConfigError(path, "the file must hold a JSON object");
  return parsed;
}

function intFrom(value: string | undefined, field: string, min: number, max: number): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(field, `must be an integer between ${min} and ${max}, got '${value}'`);
  return n;
}

function threadsFrom(env: string | undefined, file: unknown): number | "auto" {
  if (env !== undefined && env !== "") {
    return env === "auto" ? "auto" : (intFrom(env, "ALVEARE_THREADS", 1, 1024) ?? "auto");
  }
  if (file === undefined || file === "auto") return "auto";
  if (typeof file === "number" && Number.isInteger(file) && file >= 1 && file <= 1024) return file;
  throw new ConfigError("engine.threads", "must be \"auto\" or an integer between 1 and 1024");
}

/** Builds the server's configuration: flags win over env, env over the config file, the file over defaults. */
export function loadConfig(flags: ServeFlags = {}, env: Env = process.env): ServerConfig {
  const configPath = flags.config ?? env.ALVEARE_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};
  onlyKeys(file, ["port", "host", "data_dir", "log_level", "body_limit", "database_url", "redis_url", "engine", "models", "specialists", "plans"], "");
  const engine = objectAt(file, "engine", "") ?? {};
  onlyKeys(engine, ["parallel", "queue", "threads"], "engine.");
  const models: Record<string, string> = {};
  const fileModels = objectAt(file, "models", "") ?? {};
  for (const name of Object.keys(fileModels)) models[name] = stringAt(fileModels, name, "models.") ?? "";
  const model = flags.model ?? env.ALVEARE_MODEL;
  if (model) models.base = model;
  models.base ??= DEFAULT_MODEL_URI;

  const specialists = parseSpecialists(file.specialists);
  const plans = parsePlans(file.plans);
  const known = new Set(specialists.map((s) => s.id));
  for (const name of Object.keys(isFields(file.plans) ? file.plans : {})) {
    const listed = plans[name]?.specialists;
    for (const id of listed === "*" || listed === undefined ? [] : listed) {
      if (!known.has(id)) throw new ConfigError(`plans.${name}.specialists`, `'${id}' is not a specialist of this server`);
    }
  }
  for (const s of specialists) {
    if (s.remote === undefined && !Object.hasOwn(models, s.model) && !looksLikeModelLocation(s.model)) {
      throw new ConfigError(`specialists.${s.id}.model`, `'${s.model}' is neither a name in 'models' nor a .gguf path or hf: URI`);
    }
  }
  // Refuse rather than silently run single-node: limits would not be shared across nodes.
  const databaseUrl = env.ALVEARE_DATABASE_URL || stringAt(file, "database_url", "");
  if (databaseUrl) throw new ConfigError("ALVEARE_DATABASE_URL", "PostgreSQL is not supported yet; unset it to use SQLite in the data dir");
  const redisUrl = env.ALVEARE_REDIS_URL || stringAt(file, "redis_url", "");
  if (redisUrl) throw new ConfigError("ALVEARE_REDIS_URL", "Redis is not supported yet; unset it to keep rate limits in this process");
  return {
    port: intFrom(flags.port, "--port", 0, 65535) ?? intFrom(env.ALVEARE_PORT, "ALVEARE_PORT", 0, 65535) ?? numberAt(file, "port", "", { min: 0, max: 65535, integer: true }) ?? 8080,
    host: flags.host ?? env.ALVEARE_HOST ?? stringAt(file, "host", "") ?? "127.0.0.1",
    dataDir: resolve(flags.dataDir ?? env.ALVEARE_DATA_DIR ?? stringAt(file, "data_dir", "") ?? "./data"),
    logLevel: env.ALVEARE_LOG_LEVEL ?? stringAt(file, "log_level", "") ?? "info",
    bodyLimit: numberAt(file, "body_limit", "", { min: 1024, max: 1024 ** 3, integer: true }) ?? DEFAULT_BODY_LIMIT,
    http: httpLimitsFrom(env),
    adminToken: env.ALVEARE_ADMIN_TOKEN || undefined,
    engine: {
      parallel: numberAt(engine, "parallel", "engine.", { min: 1, max: 256, integer: true }) ?? 4,
      queue: numberAt(engine, "queue", "engine.", { min: 0, max: 100_000, integer: true }) ?? 64,
      threads: threadsFrom(env.ALVEARE_THREADS, engine.threads),
    },
    models,
    specialists,
    plans,
  };
}

export function looksLikeModelLocation(s: string): boolean {
  return s.endsWith(".gguf") || s.startsWith("hf:") || s.startsWith("https://") || s.startsWith("http://");
}
