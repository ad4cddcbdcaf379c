import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { NonEmptyString, problem, StringEnum } from "../schema/builders.js";
import { compileSchema } from "../schema/compile.js";

/**
 * The config file's shape. Unlike the HTTP API, every object here refuses
 * fields it does not know, so a typo is an error rather than a silently ignored
 * setting. Which fields a *new* specialist or plan needs depends on the
 * defaults it would replace, so that is checked where they are merged.
 */

const Strict = { additionalProperties: false } as const;
const StringList = Type.Array(NonEmptyString(), { minItems: 1, ...problem("must be a non-empty array of non-empty strings") });
const Int = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });
const Num = (minimum: number, maximum: number) => Type.Number({ minimum, maximum });

/** An object keyed by names the pattern allows, each value of one schema. */
function NamedTable<T extends TSchema>(pattern: string, key: { field: string; keyedBy: string }, value: T) {
  return Type.Unsafe<Record<string, Static<T>>>({
    type: "object",
    propertyNames: { pattern, ...problem(`${key.field} must be lowercase letters, digits, '-' or '_'`) },
    additionalProperties: value,
    ...problem({ type: `must be an object keyed by ${key.keyedBy}` }),
  });
}

const SPECIALIST_ID_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
const PLAN_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,40}$";

const OutputSchema = Type.Object(
  {
    type: Type.Optional(StringEnum(["text", "labels", "json_object", "json_schema"])),
    labels: Type.Optional(StringList),
    schema: Type.Optional(Type.Object({})),
  },
  Strict,
);

const UpstreamSchema = Type.Object(
  {
    base_url: Type.Optional(NonEmptyString()),
    model: Type.Optional(NonEmptyString()),
    api_key_env: Type.Optional(NonEmptyString()),
  },
  Strict,
);

/** One upstream inline (base_url, model, api_key_env), or several under `upstreams`. */
const RemoteSchema = Type.Object(
  {
    upstreams: Type.Optional(
      Type.Array(UpstreamSchema, { minItems: 1, ...problem({ type: "must be a non-empty array", minItems: "must be a non-empty array" }) }),
    ),
    ...UpstreamSchema.properties,
    connect_timeout_ms: Type.Optional(Int(1, 600_000)),
    read_timeout_ms: Type.Optional(Int(1, 3_600_000)),
    answer_timeout_ms: Type.Optional(Int(1, 3_600_000)),
    health_check_interval_ms: Type.Optional(Int(100, 3_600_000)),
  },
  Strict,
);

const SpecialistSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean()),
    description: Type.Optional(NonEmptyString()),
    model: Type.Optional(NonEmptyString()),
    lora: Type.Optional(Type.Object({ path: Type.Optional(NonEmptyString()), scale: Type.Optional(Num(0, 10)) }, Strict)),
    // May be empty: a remote specialist may rely on its upstream's own system prompt.
    system_prompt: Type.Optional(Type.String()),
    output: Type.Optional(OutputSchema),
    defaults: Type.Optional(
      Type.Object(
        {
          max_tokens: Type.Optional(Int(1, 4096)),
          temperature: Type.Optional(Num(0, 2)),
          top_p: Type.Optional(Num(0.000001, 1)),
        },
        Strict,
      ),
    ),
    context_size: Type.Optional(Int(64, 1_048_576)),
    remote: Type.Optional(RemoteSchema),
  },
  Strict,
);
export type SpecialistFields = Static<typeof SpecialistSchema>;
export type RemoteFields = Static<typeof RemoteSchema>;
export type UpstreamFields = Static<typeof UpstreamSchema>;
export type OutputFields = Static<typeof OutputSchema>;

const SpecialistsSchema = NamedTable(SPECIALIST_ID_PATTERN, { field: "id", keyedBy: "specialist id" }, SpecialistSchema);

const PlanSchema = Type.Object(
  {
    requests_per_minute: Type.Optional(Int(1, 10_000_000)),
    requests_per_month: Type.Optional(Int(0, 1e12)),
    window_seconds: Type.Optional(Num(0.1, 86_400)),
    specialists: Type.Optional(Type.Union([Type.Literal("*"), StringList], problem("must be a non-empty array of non-empty strings"))),
    /** Most API keys (live and test, not revoked) one account of the plan may hold. */
    max_keys: Type.Optional(Int(1, 100_000)),
    /** Prompt + completion tokens per API key over the plan's window; no cap when absent. */
    tokens_per_minute: Type.Optional(Int(1, 1e12)),
    /** Requests of one API key in flight at once; no cap when absent. */
    max_concurrent_requests: Type.Optional(Int(1, 1_000_000)),
  },
  Strict,
);

const PlansSchema = NamedTable(PLAN_NAME_PATTERN, { field: "name", keyedBy: "plan name" }, PlanSchema);

const EngineSchema = Type.Object(
  {
    parallel: Type.Optional(Int(1, 256)),
    queue: Type.Optional(Int(0, 100_000)),
    threads: Type.Optional(Type.Union([Type.Literal("auto"), Int(1, 1024)], problem('must be "auto" or an integer between 1 and 1024'))),
    snapshot_memory_mb: Type.Optional(Int(0, 1_048_576)),
  },
  Strict,
);

/** The whole file (`--config` / ALVEARE_CONFIG). */
const ConfigFileSchema = Type.Object(
  {
    port: Type.Optional(Int(0, 65535)),
    host: Type.Optional(NonEmptyString()),
    data_dir: Type.Optional(NonEmptyString()),
    log_level: Type.Optional(NonEmptyString()),
    body_limit: Type.Optional(Int(1024, 1024 ** 3)),
    database_url: Type.Optional(NonEmptyString()),
    redis_url: Type.Optional(NonEmptyString()),
    engine: Type.Optional(EngineSchema),
    models: Type.Optional(Type.Unsafe<Record<string, string>>({ type: "object", additionalProperties: NonEmptyString() })),
    specialists: Type.Optional(SpecialistsSchema),
    plans: Type.Optional(PlansSchema),
  },
  Strict,
);
export type ConfigFile = Static<typeof ConfigFileSchema>;

/** The file's fields, for `alveare serve --help`: an object field with its own fields in parentheses (engine's). */
export const CONFIG_FILE_FIELDS: readonly string[] = Object.keys(ConfigFileSchema.properties).map((name) =>
  name === "engine" ? `engine (${Object.keys(EngineSchema.properties).join(", ")})` : name,
);

export const configFile = compileSchema(ConfigFileSchema);
export const specialistsTable = compileSchema(SpecialistsSchema);
export const plansTable = compileSchema(PlansSchema);
