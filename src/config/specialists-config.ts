import type { OutputConstraint } from "../engines/types.js";
import { classifierPrompt, defaultSpecialists } from "../specialists/defaults.js";
import type { RemoteTarget, SpecialistDefinition, Upstream } from "../specialists/specialist.js";
import { ConfigError } from "./config-error.js";
import { isFields, numberAt, objectAt, onlyKeys, stringAt, stringListAt, booleanAt, type Fields } from "./fields.js";

const SPECIALIST_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function parseOutput(o: Fields, path: string, current: OutputConstraint | undefined): OutputConstraint | undefined {
  const out = objectAt(o, "output", path);
  if (out === undefined) return current;
  const p = `${path}output.`;
  onlyKeys(out, ["type", "labels", "schema"], p);
  const type = stringAt(out, "type", p);
  switch (type) {
    case "text":
    case "json_object":
      return { type };
    case "labels":
      return { type, labels: stringListAt(out, "labels", p) ?? fail(`${p}labels`, "is required for output type labels") };
    case "json_schema":
      return { type, schema: objectAt(out, "schema", p) ?? fail(`${p}schema`, "is required for output type json_schema") };
    default:
      throw new ConfigError(`${p}type`, "must be one of text, labels, json_object, json_schema");
  }
}

function fail(field: string, problem: string): never {
  throw new ConfigError(field, problem);
}

function parseUpstream(u: Fields, p: string): Upstream {
  onlyKeys(u, ["base_url", "model", "api_key_env"], p);
  const baseUrl = stringAt(u, "base_url", p) ?? fail(`${p}base_url`, "is required");
  try {
    const url = new URL(baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("scheme");
  } catch {
    fail(`${p}base_url`, "must be an http(s) URL such as http://127.0.0.1:8000/v1");
  }
  return {
    baseUrl: baseUrl.replace(/\/+$/, ""),
    model: stringAt(u, "model", p) ?? fail(`${p}model`, "is required"),
    apiKeyEnv: stringAt(u, "api_key_env", p),
  };
}

/** `remote` names one upstream inline, or several under `upstreams`. */
function parseRemote(o: Fields, path: string): RemoteTarget | undefined {
  const r = objectAt(o, "remote", path);
  if (r === undefined) return undefined;
  const p = `${path}remote.`;
  const shared = ["connect_timeout_ms", "read_timeout_ms", "health_check_interval_ms"];
  let upstreams: Upstream[];
  if (r.upstreams !== undefined) {
    onlyKeys(r, ["upstreams", ...shared], p);
    if (!Array.isArray(r.upstreams) || r.upstreams.length === 0) fail(`${p}upstreams`, "must be a non-empty array");
    upstreams = (r.upstreams as unknown[]).map((u, i) => {
      if (!isFields(u)) fail(`${p}upstreams[${i}]`, "must be an object");
      return parseUpstream(u, `${p}upstreams[${i}].`);
    });
  } else {
    onlyKeys(r, ["base_url", "model", "api_key_env", ...shared], p);
    upstreams = [parseUpstream({ base_url: r.base_url, model: r.model, api_key_env: r.api_key_env }, p)];
  }
  return {
    upstreams,
    connectTimeoutMs: numberAt(r, "connect_timeout_ms", p, { min: 1, max: 600_000, integer: true }) ?? 5_000,
    readTimeoutMs: numberAt(r, "read_timeout_ms", p, { min: 1, max: 3_600_000, integer: true }) ?? 120_000,
    healthCheckIntervalMs: numberAt(r, "health_check_interval_ms", p, { min: 100, max: 3_600_000, integer: true }) ?? 10_000,
  };
}

/**
 * Applies the config file's `specialists` table to the defaults: a known id is
 * changed field by field, a new id is added (and must say what it is), and
 * `"enabled": false` removes one.
 */
export function parseSpecialists(raw: unknown): SpecialistDefinition[] {
  const byId = new Map(defaultSpecialists().map((s) => [s.id, s]));
  if (raw === undefined) return [...byId.values()];
  if (!isFields(raw)) throw new ConfigError("specialists", "must be an object keyed by specialist id");
  for (const [id, value] of Object.entries(raw)) {
    const path = `specialists.${id}.`;
    if (!SPECIALIST_ID.test(id)) throw new ConfigError(`specialists.${id}`, "id must be lowercase letters, digits, '-' or '_'");
    if (!isFields(value)) throw new ConfigError(`specialists.${id}`, "must be an object");
    onlyKeys(value, ["enabled", "description", "model", "lora", "system_prompt", "output", "defaults", "context_size", "remote"], path);
    if (booleanAt(value, "enabled", path) === false) {
      byId.delete(id);
      continue;
    }
    const base = byId.get(id);
    const output = parseOutput(value, path, base?.output) ?? { type: "text" as const };
    const labelsChanged = base !== undefined && value.output !== undefined && value.system_prompt === undefined && output.type === "labels";
    // An empty system prompt is allowed: a remote specialist may rely on its upstream's own.
    if (value.system_prompt !== undefined && typeof value.system_prompt !== "string") {
      throw new ConfigError(`${path}system_prompt`, "must be a string");
    }
    const systemPrompt =
      (value.system_prompt as string | undefined) ??
      (labelsChanged || (base === undefined && output.type === "labels") ? classifierPrompt(output.labels) : base?.systemPrompt) ??
      fail(`${path}system_prompt`, "is required for a new specialist");
    const d = objectAt(value, "defaults", path) ?? {};
    onlyKeys(d, ["max_tokens", "temperature", "top_p"], `${path}defaults.`);
    const lora = objectAt(value, "lora", path);
    if (lora !== undefined) onlyKeys(lora, ["path", "scale"], `${path}lora.`);
    byId.set(id, {
      id,
      description: stringAt(value, "description", path) ?? base?.description ?? fail(`${path}description`, "is required for a new specialist"),
      model: stringAt(value, "model", path) ?? base?.model ?? "base",
      lora:
        lora === undefined ? base?.lora
        : {
            path: stringAt(lora, "path", `${path}lora.`) ?? fail(`${path}lora.path`, "is required"),
            scale: numberAt(lora, "scale", `${path}lora.`, { min: 0, max: 10 }) ?? 1,
          },
      systemPrompt,
      output,
      defaults: {
        maxTokens: numberAt(d, "max_tokens", `${path}defaults.`, { min: 1, max: 4096, integer: true }) ?? base?.defaults.maxTokens ?? 512,
        temperature: numberAt(d, "temperature", `${path}defaults.`, { min: 0, max: 2 }) ?? base?.defaults.temperature ?? 0.7,
        topP: numberAt(d, "top_p", `${path}defaults.`, { min: 0.000001, max: 1 }) ?? base?.defaults.topP ?? 1,
      },
      contextSize: numberAt(value, "context_size", path, { min: 64, max: 1_048_576, integer: true }) ?? base?.contextSize ?? 2048,
      remote: value.remote === undefined ? base?.remote : parseRemote(value, path),
    });
  }
  if (byId.size === 0) throw new ConfigError("specialists", "at least one specialist must stay enabled");
  return [...byId.values()];
}
