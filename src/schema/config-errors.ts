import { ConfigError } from "../config/config-error.js";
import type { CompiledSchema } from "./compile.js";
import { formatPath, locateError, type LocatedError, type SchemaNode } from "./locate.js";

const CONFIG_KINDS: ReadonlyMap<string, string> = new Map([
  ["integer", "must be an integer"],
  ["number", "must be a number"],
  ["boolean", "must be true or false"],
  ["object", "must be an object"],
  ["array", "must be an array"],
]);

function configProblem(e: LocatedError): string {
  if (e.problem !== undefined) return e.problem;
  const { schema } = e;
  switch (e.keyword) {
    case "type": {
      const kind = [schema.type].flat().find((t) => t !== "null");
      if (kind === "string") return typeof schema.minLength === "number" && schema.minLength > 0 ? "must be a non-empty string" : "must be a string";
      return CONFIG_KINDS.get(String(kind)) ?? `must be of type ${String(kind)}`;
    }
    case "minLength":
      return "must be a non-empty string";
    case "minimum":
    case "maximum":
      return `must be between ${String(schema.minimum)} and ${String(schema.maximum)}`;
    case "enum":
      return `must be one of ${(schema.enum as unknown[]).map(String).join(", ")}`;
    case "additionalProperties":
      return `unknown field (expected one of: ${Object.keys(schema.properties as object).join(", ")})`;
    case "required":
      return "is required";
    default:
      return "is not valid";
  }
}

/** A config-file failure as a ConfigError naming the field's dotted path (`plans.solo.specialists`). */
function configError(e: LocatedError, prefix: string): ConfigError {
  const field =
    e.keyword === "additionalProperties"
      ? [...e.path, String(e.params.additionalProperty)]
      : e.keyword === "required"
        ? [...e.path, String(e.params.missingProperty)]
        : e.path;
  return new ConfigError(formatPath(field, prefix), configProblem(e));
}

/** `data` checked against a config schema; `prefix` is where `data` sits in the file ("" for the whole file). */
export function parseConfigPart<T>(compiled: CompiledSchema<T>, data: unknown, prefix: string): T {
  const result = compiled.check(data);
  if (result.ok) return result.value;
  throw configError(locateError(compiled.schema as SchemaNode, data, result.error), prefix);
}
