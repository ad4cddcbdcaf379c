import { accessSync, constants as fsConstants, existsSync, readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { dirname, resolve } from "node:path";
import type { SpecialistDefinition } from "../specialists/specialist.js";
import { ConfigError } from "./config-error.js";
import { parseSpecialists } from "./specialists-config.js";
import { duplicateKey } from "./duplicate-keys.js";
import { parsePlans, type Plan } from "../gate/plans.js";
import { keyPrefixOf } from "../gate/credentials.js";
import { parseConfigPart } from "../schema/config-errors.js";
import { DEFAULT_AUDIT_RETENTION_DAYS } from "../store/audit-log.js";
import { sqliteFile } from "../store/sqlite/database-file.js";
import { configFile, type ConfigFile } from "./schemas.js";
import { observabilityFrom, type ObservabilitySettings } from "../observability/settings.js";

export const DEFAULT_MODEL_URI = "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf";
const DEFAULT_BODY_LIMIT = 1024 * 1024;

interface EngineSettings {
  /** Sequences decoded together per loaded model (parallel slots). */
  parallel: number;
  /** Requests that may wait for a slot before new ones get 503. */
  queue: number;
  /** llama.cpp threads; "auto" measures at start-up. */
  threads: number | "auto";
  /** Disk (and page cache) the system-prompt snapshots may use together; 0 turns them off; unset, the engine's default. */
  prefixSnapshotBytes?: number | undefined;
}

/** How long a client may take to send a request, and how many connections may be open at once. */
export interface HttpLimits {
  /** ALVEARE_REQUEST_TIMEOUT_MS: headers and body, from the first byte; the response is not limited. */
  requestTimeoutMs: number;
  /** ALVEARE_HEADERS_TIMEOUT_MS: the headers alone; never more than the request timeout. */
  headersTimeoutMs: number;
  /** ALVEARE_MAX_CONNECTIONS: further connections are closed as they arrive. */
  maxConnections: number;
  /** ALVEARE_STREAM_STALL_MS: a stream whose client reads nothing for this long while output waits is cut. */
  streamStallMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, maxConnections: 512, streamStallMs: 30_000 };

function httpLimitsFrom(env: Env): HttpLimits {
  const requestTimeoutMs =
    intFrom(env.ALVEARE_REQUEST_TIMEOUT_MS, "ALVEARE_REQUEST_TIMEOUT_MS", 100, 3_600_000) ?? DEFAULT_HTTP_LIMITS.requestTimeoutMs;
  const headersTimeoutMs =
    intFrom(env.ALVEARE_HEADERS_TIMEOUT_MS, "ALVEARE_HEADERS_TIMEOUT_MS", 100, 3_600_000) ?? DEFAULT_HTTP_LIMITS.headersTimeoutMs;
  return {
    requestTimeoutMs,
    headersTimeoutMs: Math.min(headersTimeoutMs, requestTimeoutMs),
    maxConnections: intFrom(env.ALVEARE_MAX_CONNECTIONS, "ALVEARE_MAX_CONNECTIONS", 1, 1_000_000) ?? DEFAULT_HTTP_LIMITS.maxConnections,
    streamStallMs: intFrom(env.ALVEARE_STREAM_STALL_MS, "ALVEARE_STREAM_STALL_MS", 100, 3_600_000) ?? DEFAULT_HTTP_LIMITS.streamStallMs,
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
  /** ALVEARE_PUBLIC_URL: where people reach this server; invitation links start with it. */
  publicUrl: string;
  /** Whether ALVEARE_PUBLIC_URL was set (else publicUrl is guessed from the host and port settings). */
  publicUrlGiven?: boolean | undefined;
  /** ALVEARE_LOG_FORMAT: "auto" is human-readable in a terminal and JSON otherwise. */
  logFormat: LogFormat;
  engine: EngineSettings;
  /** Model names to paths or hf: URIs; `base` is the default model every default specialist uses. */
  models: Record<string, string>;
  specialists: SpecialistDefinition[];
  plans: Record<string, Plan>;
  /** ALVEARE_TRUST_PROXY, as Fastify's trustProxy: whose X-Forwarded-* headers to believe. */
  trustProxy: TrustProxy;
  /** ALVEARE_AUDIT_RETENTION_DAYS: audit records older than this are pruned. */
  auditRetentionDays: number;
  /** Metrics listener and drain deadline; no metrics listener when absent. */
  observability?: ObservabilitySettings | undefined;
  /** ALVEARE_DATABASE_URL: PostgreSQL instead of the SQLite file; set only together with redisUrl. */
  databaseUrl?: string | undefined;
  /** ALVEARE_REDIS_URL: the shared limiter and caches; set only together with databaseUrl. */
  redisUrl?: string | undefined;
  /** ALVEARE_NODE_LEASE_SECONDS: how long a node that stopped renewing its lease counts as alive (shared mode). */
  nodeLeaseMs?: number | undefined;
  /** ALVEARE_REDIS_PREFIX: every Redis key this node writes starts with it. */
  redisPrefix?: string | undefined;
}

/** The default Redis key prefix. */
export const DEFAULT_REDIS_PREFIX = "alveare:";

const DEFAULT_NODE_LEASE_SECONDS = 15;

/**
 * The shared mode takes both URLs: PostgreSQL alone would leave every limit in
 * one process, Redis alone would share limits over per-node data. Refused at
 * start with one line, never half-applied.
 */
function sharedModeFrom(database: Setting, redis: Setting): { databaseUrl?: string; redisUrl?: string } {
  if (!database.value && !redis.value) return {};
  const missing = (absent: Setting, present: Setting) =>
    new ConfigError(
      absent.name,
      `is missing (nor ${absent.fileName} in the config file): ${present.name} is set, and the shared mode needs both (or neither)`,
    );
  if (!database.value) throw missing(database, redis);
  if (!redis.value) throw missing(redis, database);
  checkScheme(database.value, database.name, ["postgres:", "postgresql:"], "postgres://user:password@host:5432/alveare");
  checkScheme(redis.value, redis.name, ["redis:", "rediss:"], "redis://host:6379");
  // ioredis sends the path as SELECT's argument: anything but a number failed there, with a stack trace.
  if (!/^(\/\d*)?$/.test(new URL(redis.value).pathname)) {
    throw new ConfigError(redis.name, "names its database by number only, after the host (redis://host:6379/0), or not at all");
  }
  return { databaseUrl: database.value, redisUrl: redis.value };
}

/** A setting from the environment or else the config file, named as the operator wrote it. */
interface Setting {
  value: string | undefined;
  /** The variable, or `<field> (config file)` when the value came from the file. */
  name: string;
  fileName: string;
}

function setting(envName: string, envValue: string | undefined, fileName: string, fileValue: string | undefined): Setting {
  if (envValue) return { value: envValue, name: envName, fileName };
  if (fileValue) return { value: fileValue, name: `${fileName} (config file)`, fileName };
  return { value: undefined, name: envName, fileName };
}

/** The data directory, absolute; a path that is a file (not yet a directory is fine: it is made) is refused naming its setting. */
function dataDirFrom(flag: string | undefined, variable: string | undefined, inFile: string | undefined): string {
  // An empty variable is unset, as for the other variables (not the current directory).
  const [value, name] =
    flag !== undefined
      ? [flag, "--data-dir"]
      : variable
        ? [variable, "ALVEARE_DATA_DIR"]
        : inFile !== undefined
          ? [inFile, "data_dir (config file)"]
          : ["./data", "the default data dir"];
  const dir = resolve(value);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ConfigError(name, `${dir} is a file, not a directory`);
    return dir;
  }
  // It is made on first use: said here, naming the setting, if it cannot be.
  let parent = dirname(dir);
  while (!existsSync(parent)) parent = dirname(parent);
  if (!statSync(parent).isDirectory()) throw new ConfigError(name, `${dir} cannot be made: ${parent} is a file, not a directory`);
  try {
    accessSync(parent, fsConstants.W_OK);
  } catch {
    throw new ConfigError(name, `${dir} cannot be made: ${parent} is not writable`);
  }
  return dir;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function logLevelFrom(level: Setting): string {
  if (level.value === undefined) return "info";
  const value = level.value.toLowerCase();
  if (!LOG_LEVELS.includes(value)) throw new ConfigError(level.name, `must be one of ${LOG_LEVELS.join(", ")}, got '${level.value.slice(0, 40)}'`);
  return value;
}

function checkScheme(value: string, field: string, schemes: string[], example: string): void {
  // The value itself may hold a password: no message shows more than its scheme.
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(value)?.[0];
  if (scheme === undefined || !schemes.includes(scheme.toLowerCase())) {
    throw new ConfigError(field, `must be a ${schemes.map((s) => `${s}//`).join(" or ")} URL such as ${example}, got ${scheme ?? "no scheme"}`);
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(field, `cannot be parsed as a URL (such as ${example}): ${unparsableReason(value)}`);
  }
  // A PostgreSQL URL may name a Unix socket directory as ?host=/path instead of a host.
  if (url.hostname === "" && !url.searchParams.has("host")) throw new ConfigError(field, `names no host (a URL such as ${example})`);
}

/** Why `new URL` refused a URL of the right scheme, without quoting any of it. */
function unparsableReason(value: string): string {
  const rest = value.slice(value.indexOf(":") + 1).replace(/^\/\//, "");
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  // An "@" after the authority means a password with a "/", "?" or "#" cut it short: the port seen is not the port.
  if (end === -1 || !rest.slice(end).includes("@")) {
    const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
    const port = hostPort.startsWith("[") ? /\]:(.*)$/.exec(hostPort)?.[1] : hostPort.split(":")[1];
    if (port !== undefined && port !== "" && !(/^\d+$/.test(port) && Number(port) <= 65535)) return "its port is not a number from 1 to 65535";
  }
  return "check its host, and percent-encode characters such as @ : / ? # in a user name or password";
}

/** false (the default: ignore X-Forwarded-*), true (trust every hop), a hop count, or proxy addresses/CIDRs. */
type TrustProxy = boolean | number | string[];

const MIN_ADMIN_TOKEN_LENGTH = 32;
const MAX_ADMIN_TOKEN_LENGTH = 1024;

/** Command-line flags of `alveare serve`; absent ones fall through to env, file, defaults. */
export interface ServeFlags {
  port?: string | undefined;
  host?: string | undefined;
  dataDir?: string | undefined;
  model?: string | undefined;
  config?: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

export type LogFormat = "auto" | "json" | "pretty";

function logFormatFrom(value: string | undefined): LogFormat {
  if (value === undefined || value === "") return "auto";
  if (value === "auto" || value === "json" || value === "pretty") return value;
  throw new ConfigError("ALVEARE_LOG_FORMAT", `must be json, pretty or auto, got '${value}'`);
}

/** Where people reach a server listening on `host`:`port`: a wildcard host reads as localhost. */
export function reachableUrl(host: string, port: number): string {
  const reachable = host === "0.0.0.0" || host === "::" ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return `http://${reachable}:${port}`;
}

/** ALVEARE_PUBLIC_URL without a trailing slash, or the listening address (a wildcard host reads as localhost). */
function publicUrlFrom(value: string | undefined, host: string, port: number): string {
  if (value === undefined || value === "") return reachableUrl(host, port);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError("ALVEARE_PUBLIC_URL", `must be an http(s) URL such as https://ai.example.com, got '${value}'`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError("ALVEARE_PUBLIC_URL", `must be an http(s) URL such as https://ai.example.com, got '${value}'`);
  }
  return value.replace(/\/+$/, "");
}

/** `source` is the flag or variable that named the file: an unreadable file is fixed there. */
function readConfigFile(path: string, source: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(source, `cannot read ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, `not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ConfigError(path, "the file must hold a JSON object");
  const twice = duplicateKey(text);
  if (twice !== undefined) throw new ConfigError(twice, "is written twice in the file, and only the last would be used: keep one");
  return parseConfigPart(configFile, parsed, "");
}

/** `alternative`: the other value the setting takes (`"auto"`), named in the refusal beside the integers. */
function intFrom(value: string | undefined, field: string, min: number, max: number, alternative?: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(
      field,
      `must be ${alternative === undefined ? "" : `${alternative} or `}an integer between ${min} and ${max}, got '${value}'`,
    );
  }
  return n;
}

function threadsFrom(env: string | undefined, file: number | "auto" | undefined): number | "auto" {
  if (env !== undefined && env !== "") {
    // "auto" is the default, and as valid as a number: the refusal says so.
    return env === "auto" ? "auto" : (intFrom(env, "ALVEARE_THREADS", 1, 1024, '"auto"') ?? "auto");
  }
  return file ?? "auto";
}

function adminTokenFrom(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (value.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError(
      "ALVEARE_ADMIN_TOKEN",
      `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters, got ${value.length} (generate one with: openssl rand -hex 32)`,
    );
  }
  if (value.length > MAX_ADMIN_TOKEN_LENGTH) throw new ConfigError("ALVEARE_ADMIN_TOKEN", `must be at most ${MAX_ADMIN_TOKEN_LENGTH} characters`);
  // It travels as "Authorization: Bearer TOKEN", which ends at the first whitespace: such a token could never be used.
  if (/\s/.test(value)) {
    throw new ConfigError("ALVEARE_ADMIN_TOKEN", "must not contain spaces or other whitespace (generate one with: openssl rand -hex 32)");
  }
  // A credential in a key's shape is answered as a key sent by mistake, never compared with the admin token.
  const keyPrefix = keyPrefixOf(value);
  if (keyPrefix !== undefined) {
    throw new ConfigError(
      "ALVEARE_ADMIN_TOKEN",
      `must not start with ${keyPrefix} like an account's API key: the admin token is the operator's own secret (generate one with: openssl rand -hex 32)`,
    );
  }
  return value;
}

/** Names proxy-addr (Fastify's trustProxy) knows besides addresses and CIDRs. */
const PROXY_RANGE_NAMES = new Set(["loopback", "linklocal", "uniquelocal"]);

function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.has(entry) || isIP(entry) !== 0) return true;
  const slash = entry.indexOf("/");
  const version = slash === -1 ? 0 : isIP(entry.slice(0, slash));
  const bits = entry.slice(slash + 1);
  return version !== 0 && /^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128);
}

function trustProxyFrom(value: string | undefined): TrustProxy {
  const v = (value ?? "").trim();
  if (v === "" || v === "false") return false;
  if (v === "true") return true;
  if (/^\d+$/.test(v)) return intFrom(v, "ALVEARE_TRUST_PROXY", 0, 100) ?? false;
  const entries = v.split(",").map((s) => s.trim());
  const bad = entries.find((s) => !isProxyAddress(s));
  if (bad !== undefined) {
    throw new ConfigError(
      "ALVEARE_TRUST_PROXY",
      `'${bad}' is not an address or CIDR; use true, false, a hop count, or comma-separated addresses/CIDRs`,
    );
  }
  return entries;
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::"]);

/**
 * The metrics listener binds before the API does: on the API's own port (and an address that overlaps the API's)
 * it would take that port, and the start-up error would blame "another process" for the API's port.
 */
function checkMetricsPortApart(observability: ObservabilitySettings, port: number, host: string): void {
  const { metricsPort, metricsHost } = observability;
  if (metricsPort === 0 || metricsPort !== port) return;
  // Two different literal addresses, neither a wildcard, can each have the port.
  const apart = host !== metricsHost && [host, metricsHost].every((h) => isIP(h) !== 0 && !WILDCARD_HOSTS.has(h));
  if (apart) return;
  throw new ConfigError(
    "ALVEARE_METRICS_PORT",
    `${metricsPort} is the API's port too (--port, ALVEARE_PORT or 'port'); give the metrics listener a port of its own, or 0 to turn metrics off`,
  );
}

/**
 * The address to listen on. An empty ALVEARE_HOST is unset, as the other variables are; an empty
 * host reached Node's listen() as "no host", which binds every interface, and then failed to start.
 */
function hostFrom(flag: string | undefined, variable: string | undefined, inFile: string | undefined): string {
  return flag ?? (variable || undefined) ?? inFile ?? "127.0.0.1";
}

/** What each flag takes, for the message refusing it empty. */
const FLAG_VALUES: ReadonlyArray<[keyof ServeFlags, string, string]> = [
  ["port", "--port", "a port such as 8080"],
  ["host", "--host", "an address such as 127.0.0.1 (or 0.0.0.0 for every interface)"],
  ["dataDir", "--data-dir", "a directory such as ./data"],
  ["model", "--model", "a .gguf file or an hf:owner/repo/file.gguf URI"],
  ["config", "--config", "a JSON config file"],
];

/**
 * An empty flag (`--model "$UNSET"`) is refused: unlike an empty variable it was typed, and read as
 * unset it silently meant something else (the default model, downloaded; no config file; the
 * current directory as the data dir; listening on every interface).
 */
function refuseEmptyFlags(flags: ServeFlags): void {
  for (const [key, flag, value] of FLAG_VALUES) if (flags[key] === "") throw new ConfigError(flag, `must not be empty: give ${value}`);
}

/** Builds the server's configuration: flags win over env, env over the config file, the file over defaults. */
export function loadConfig(flags: ServeFlags = {}, env: Env = process.env): ServerConfig {
  refuseEmptyFlags(flags);
  const configPath = flags.config ?? env.ALVEARE_CONFIG;
  const file: ConfigFile = configPath ? readConfigFile(configPath, flags.config ? "--config" : "ALVEARE_CONFIG") : {};
  const engine = file.engine ?? {};
  // A Map: model names come from the file, and `constructor` must not look defined.
  const models = new Map(Object.entries(file.models ?? {}));
  const model = flags.model ?? env.ALVEARE_MODEL;
  if (model) models.set("base", model);
  if (!models.has("base")) models.set("base", DEFAULT_MODEL_URI);

  const specialists = parseSpecialists(file.specialists);
  const plans = parsePlans(file.plans);
  const known = new Set(specialists.map((s) => s.id));
  // Only the lists the file writes: a plan that changes one field keeps its default list, whose
  // disabled specialists are simply not served (as for the plans the file leaves alone).
  for (const [name, written] of Object.entries(file.plans ?? {})) {
    const listed = written.specialists;
    for (const id of listed === "*" || listed === undefined ? [] : listed) {
      if (!known.has(id)) throw new ConfigError(`plans.${name}.specialists`, `'${id}' is not a specialist of this server`);
    }
  }
  for (const s of specialists) {
    if (s.engine.kind === "embedded" && !models.has(s.engine.model) && !looksLikeModelLocation(s.engine.model)) {
      throw new ConfigError(`specialists.${s.id}.model`, `'${s.engine.model}' is neither a name in 'models' nor a .gguf path or hf: URI`);
    }
  }
  const { databaseUrl, redisUrl } = sharedModeFrom(
    setting("ALVEARE_DATABASE_URL", env.ALVEARE_DATABASE_URL, "database_url", file.database_url),
    setting("ALVEARE_REDIS_URL", env.ALVEARE_REDIS_URL, "redis_url", file.redis_url),
  );
  const port = intFrom(flags.port, "--port", 0, 65535) ?? intFrom(env.ALVEARE_PORT, "ALVEARE_PORT", 0, 65535) ?? file.port ?? 8080;
  const host = hostFrom(flags.host, env.ALVEARE_HOST, file.host);
  const observability = observabilityFrom(env);
  checkMetricsPortApart(observability, port, host);
  return {
    port,
    host,
    dataDir: dataDirFrom(flags.dataDir, env.ALVEARE_DATA_DIR, file.data_dir),
    logLevel: logLevelFrom(setting("ALVEARE_LOG_LEVEL", env.ALVEARE_LOG_LEVEL, "log_level", file.log_level)),
    bodyLimit: file.body_limit ?? DEFAULT_BODY_LIMIT,
    adminToken: adminTokenFrom(env.ALVEARE_ADMIN_TOKEN),
    publicUrl: publicUrlFrom(env.ALVEARE_PUBLIC_URL, host, port),
    publicUrlGiven: env.ALVEARE_PUBLIC_URL !== undefined && env.ALVEARE_PUBLIC_URL !== "",
    logFormat: logFormatFrom(env.ALVEARE_LOG_FORMAT),
    http: httpLimitsFrom(env),
    engine: {
      parallel: engine.parallel ?? 4,
      queue: engine.queue ?? 64,
      threads: threadsFrom(env.ALVEARE_THREADS, engine.threads),
      prefixSnapshotBytes: engine.snapshot_memory_mb === undefined ? undefined : engine.snapshot_memory_mb * 1024 * 1024,
    },
    models: Object.fromEntries(models),
    specialists,
    plans,
    trustProxy: trustProxyFrom(env.ALVEARE_TRUST_PROXY),
    auditRetentionDays: intFrom(env.ALVEARE_AUDIT_RETENTION_DAYS, "ALVEARE_AUDIT_RETENTION_DAYS", 1, 36_500) ?? DEFAULT_AUDIT_RETENTION_DAYS,
    observability,
    databaseUrl,
    redisUrl,
    nodeLeaseMs: (intFrom(env.ALVEARE_NODE_LEASE_SECONDS, "ALVEARE_NODE_LEASE_SECONDS", 1, 3600) ?? DEFAULT_NODE_LEASE_SECONDS) * 1000,
    redisPrefix: env.ALVEARE_REDIS_PREFIX || DEFAULT_REDIS_PREFIX,
  };
}

function looksLikeModelLocation(s: string): boolean {
  return s.endsWith(".gguf") || s.startsWith("hf:") || s.startsWith("https://") || s.startsWith("http://");
}

/** The SQLite file of accounts, keys and usage in the data dir (the server and the CLI share it). */
export const databasePath = (config: Pick<ServerConfig, "dataDir">): string => sqliteFile(config.dataDir);
