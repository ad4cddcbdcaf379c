import type { EngineConfig } from "../engines/engine-kinds.js";
import type { RemoteEngineConfig, Upstream } from "../engines/remote/remote-kind.js";
import type { OutputConstraint } from "../engines/types.js";
import { closest, slipEdits } from "../closest-name.js";
import { parseConfigPart } from "../schema/config-errors.js";
import { classifierPrompt, defaultSpecialists } from "../specialists/defaults.js";
import type { SpecialistDefinition } from "../specialists/specialist.js";
import { ConfigError } from "./config-error.js";
import { specialistsTable, type OutputFields, type RemoteFields, type SpecialistFields, type UpstreamFields } from "./schemas.js";

function fail(field: string, problem: string): never {
  throw new ConfigError(field, problem);
}

/** The fields besides `type` each output type reads. */
const OUTPUT_FIELDS: Readonly<Record<OutputConstraint["type"], readonly string[]>> = {
  text: [],
  json_object: [],
  labels: ["labels"],
  json_schema: ["schema"],
};

function parseOutput(out: OutputFields | undefined, path: string, current: OutputConstraint | undefined): OutputConstraint | undefined {
  if (out === undefined) return current;
  const p = `${path}output.`;
  // `output` replaces the specialist's constraint whole: without its type there is nothing to replace it with.
  const type = out.type ?? fail(`${p}type`, "is required (one of text, labels, json_object, json_schema)");
  // A field the type does not read would be ignored, the specialist served otherwise than the file says.
  const stray = (["labels", "schema"] as const).find((field) => out[field] !== undefined && !OUTPUT_FIELDS[type].includes(field));
  if (stray !== undefined) {
    const reader = Object.entries(OUTPUT_FIELDS).find(([, fields]) => fields.includes(stray))![0];
    fail(`${p}${stray}`, `is not read by output type ${type} (only ${reader} takes it)`);
  }
  switch (out.type) {
    case "text":
    case "json_object":
      return { type: out.type };
    case "labels":
      return { type: out.type, labels: checkedLabels(out.labels ?? fail(`${p}labels`, "is required for output type labels"), `${p}labels`) };
    case "json_schema":
      return { type: out.type, schema: out.schema ?? fail(`${p}schema`, "is required for output type json_schema") };
    default:
      return fail(`${p}type`, "must be one of text, labels, json_object, json_schema");
  }
}

/**
 * An answer is one of the labels and `scores` is keyed by them, so each must be
 * told apart, and as the answer shows it: `result` is trimmed.
 */
function checkedLabels(labels: string[], field: string): string[] {
  const padded = labels.find((label) => label.trim() !== label);
  if (padded !== undefined) fail(field, `${JSON.stringify(padded)} starts or ends with whitespace; write the label without it`);
  const twice = labels.find((label, i) => labels.indexOf(label) !== i);
  if (twice !== undefined) fail(field, `${JSON.stringify(twice)} is listed twice; each label must be different`);
  return labels;
}

function parseUpstream(u: UpstreamFields, p: string): Upstream {
  const baseUrl = u.base_url ?? fail(`${p}base_url`, "is required");
  let url: URL | undefined;
  try {
    url = new URL(baseUrl);
  } catch {
    // Refused below.
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    fail(`${p}base_url`, "must be an http(s) URL such as http://127.0.0.1:8000/v1");
  }
  // The base URL is shown in logs, metrics and readiness: a secret in it would be too.
  if (url.username !== "" || url.password !== "") {
    fail(`${p}base_url`, "must not hold credentials (user:password@): put the upstream's key in an environment variable and name it in api_key_env");
  }
  // /chat/completions and /models are appended to it: after a query or fragment they would not reach the path.
  if (/[?#]/.test(baseUrl)) {
    fail(
      `${p}base_url`,
      "must have no query string or fragment: /chat/completions and /models are appended to it (such as http://127.0.0.1:8000/v1)",
    );
  }
  return {
    baseUrl: baseUrl.replace(/\/+$/, ""),
    model: u.model ?? fail(`${p}model`, "is required"),
    apiKeyEnv: u.api_key_env,
  };
}

const INLINE_UPSTREAM = ["base_url", "model", "api_key_env"] as const;
const SHARED_REMOTE = ["connect_timeout_ms", "read_timeout_ms", "answer_timeout_ms", "health_check_interval_ms"] as const;

/** `remote` names one upstream inline, or several under `upstreams`, not both. */
function parseRemote(r: RemoteFields, path: string): RemoteEngineConfig {
  const p = `${path}remote.`;
  let upstreams: Upstream[];
  if (r.upstreams !== undefined) {
    const inline = INLINE_UPSTREAM.find((key) => r[key] !== undefined);
    if (inline !== undefined) fail(`${p}${inline}`, `unknown field (expected one of: ${["upstreams", ...SHARED_REMOTE].join(", ")})`);
    upstreams = r.upstreams.map((u, i) => parseUpstream(u, `${p}upstreams[${i}].`));
  } else {
    upstreams = [parseUpstream(r, p)];
  }
  return {
    kind: "remote",
    upstreams,
    connectTimeoutMs: r.connect_timeout_ms ?? 5_000,
    readTimeoutMs: r.read_timeout_ms ?? 120_000,
    answerTimeoutMs: r.answer_timeout_ms ?? 600_000,
    healthCheckIntervalMs: r.health_check_interval_ms ?? 10_000,
  };
}

/**
 * A `remote` table makes a specialist remote (or changes its upstreams);
 * otherwise `model` and `lora` change the embedded engine. A remote specialist
 * stays remote when only `model` or `lora` is given.
 */
function parseEngine(value: SpecialistFields, path: string, current: EngineConfig | undefined): EngineConfig {
  if (value.remote !== undefined) return parseRemote(value.remote, path);
  if (current?.kind === "remote") return current;
  const lora = value.lora;
  return {
    kind: "embedded",
    model: value.model ?? current?.model ?? "base",
    lora: lora === undefined ? current?.lora : { path: lora.path ?? fail(`${path}lora.path`, "is required"), scale: lora.scale ?? 1 },
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
  for (const [id, value] of Object.entries(parseConfigPart(specialistsTable, raw, "specialists"))) {
    const path = `specialists.${id}.`;
    if (value.enabled === false) {
      // A misspelt id ("clasify") would otherwise turn nothing off, silently, and the one meant stay served. A new
      // specialist written out in full and turned off (kept for later, as the example config's) is no mistake.
      if (!byId.delete(id) && Object.keys(value).every((field) => field === "enabled")) {
        const meant = closest(id, byId.keys(), slipEdits(id));
        fail(`specialists.${id}`, `turns off no specialist: there is none named '${id}'${meant === undefined ? "" : ` (did you mean '${meant}'?)`}`);
      }
      continue;
    }
    const base = byId.get(id);
    const output = parseOutput(value.output, path, base?.output) ?? { type: "text" as const };
    const labelsChanged = base !== undefined && value.output !== undefined && value.system_prompt === undefined && output.type === "labels";
    const systemPrompt =
      value.system_prompt ??
      (labelsChanged || (base === undefined && output.type === "labels") ? classifierPrompt(output.labels) : base?.systemPrompt) ??
      fail(`${path}system_prompt`, "is required for a new specialist");
    const d = value.defaults ?? {};
    byId.set(id, {
      id,
      description: value.description ?? base?.description ?? fail(`${path}description`, "is required for a new specialist"),
      systemPrompt,
      output,
      defaults: {
        maxTokens: d.max_tokens ?? base?.defaults.maxTokens ?? 512,
        temperature: d.temperature ?? base?.defaults.temperature ?? 0.7,
        topP: d.top_p ?? base?.defaults.topP ?? 1,
      },
      contextSize: value.context_size ?? base?.contextSize ?? 2048,
      engine: parseEngine(value, path, base?.engine),
      ...(base?.kind === undefined ? {} : { kind: base.kind }),
    });
    if (base?.kind === "embeddings" && value.remote !== undefined)
      fail(`${path}remote`, "an embeddings specialist runs on a model file; remote embeddings are not supported");
  }
  if (byId.size === 0) throw new ConfigError("specialists", "at least one specialist must stay enabled");
  return [...byId.values()];
}
