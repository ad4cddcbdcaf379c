import { errors, type ApiError } from "../errors.js";
import type { CompiledSchema } from "./compile.js";
import { formatPath, locateError, quoteValue, typeName, type LocatedError, type SchemaNode } from "./locate.js";

const KINDS: ReadonlyMap<string, string> = new Map([
  ["string", "a string"],
  ["integer", "an integer"],
  ["number", "a number"],
  ["boolean", "a boolean"],
  ["object", "an object"],
  ["array", "an array"],
]);

const expectedTypes = (schema: SchemaNode): string[] => [schema.type].flat().filter((t): t is string => typeof t === "string" && t !== "null");

const numberAt = (schema: SchemaNode, keyword: string): number | undefined => (typeof schema[keyword] === "number" ? schema[keyword] : undefined);

/** `"a", "b" or "c"` */
const listChoices = (values: readonly unknown[]): string => {
  const quoted = values.map((v) => JSON.stringify(v));
  return quoted.length <= 1 ? (quoted[0] ?? "") : `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`;
};

function wrongType(e: LocatedError): string {
  const kind = expectedTypes(e.schema)[0] ?? "";
  // Numbers quote the value ("got string \"5\""), as clients often send a number as a string.
  const got =
    (kind === "integer" || kind === "number") && typeof e.value !== "object" ? `${typeName(e.value)} ${quoteValue(e.value)}` : typeName(e.value);
  return `expected ${KINDS.get(kind) ?? kind}, got ${got}.`;
}

/**
 * A number's exact value, past 2^53 too, where JavaScript would round its digits (2^64 prints as
 * 18446744073709552000); from 1e21 on, as JavaScript writes it (1e+300, not 301 digits).
 */
function exactNumber(n: number): string {
  return Number.isInteger(n) && Math.abs(n) >= 2 ** 53 && Math.abs(n) < 1e21 ? BigInt(n).toString() : String(n);
}

/** A schema's bound: one at ±2^63 is the signed 64-bit range's own (a seed's), whose top, 2^63 − 1, no double holds. */
const boundText = (n: number): string => (n === 2 ** 63 ? "9223372036854775807" : exactNumber(n));

function outOfRange(e: LocatedError): string {
  const min = numberAt(e.schema, "exclusiveMinimum") ?? numberAt(e.schema, "minimum");
  const max = numberAt(e.schema, "maximum");
  const lower =
    min === undefined ? undefined : `${numberAt(e.schema, "exclusiveMinimum") !== undefined ? "greater than" : "at least"} ${boundText(min)}`;
  const bounds = [lower, max === undefined ? undefined : `at most ${boundText(max)}`].filter((b) => b !== undefined).join(" and ");
  return `must be ${bounds}, got ${typeof e.value === "number" ? exactNumber(e.value) : quoteValue(e.value)}.`;
}

/** The tag values of a TaggedUnion, in the order of its variants. */
function tagValues(schema: SchemaNode, tag: string): unknown[] {
  const variants = Array.isArray(schema.oneOf) ? (schema.oneOf as SchemaNode[]) : [];
  return variants.flatMap((v) => {
    const property = (v.properties as Record<string, SchemaNode> | undefined)?.[tag];
    return property?.const !== undefined ? [property.const] : Array.isArray(property?.enum) ? property.enum : [];
  });
}

/** The catalogue's wording for each failing keyword; `e.problem` (the schema's own) wins. */
function problemText(e: LocatedError): string {
  if (e.problem !== undefined) return e.problem;
  switch (e.keyword) {
    case "type":
      return wrongType(e);
    case "minimum":
    case "maximum":
    case "exclusiveMinimum":
    case "exclusiveMaximum":
      return outOfRange(e);
    case "minLength":
      return e.params.limit === 1 ? "must not be empty." : `must be at least ${String(e.params.limit)} characters long.`;
    case "maxLength":
      return `must be at most ${String(e.params.limit)} characters long.`;
    case "minItems":
      return `must contain at least ${String(e.params.limit)} item${e.params.limit === 1 ? "" : "s"}.`;
    case "maxItems":
      return `must contain at most ${String(e.params.limit)} item${e.params.limit === 1 ? "" : "s"}.`;
    case "enum":
      return `must be ${listChoices(e.schema.enum as unknown[])}, got ${quoteValue(e.value)}.`;
    case "const":
      return `must be ${JSON.stringify(e.schema.const)}, got ${quoteValue(e.value)}.`;
    case "discriminator":
      return `must be ${listChoices(tagValues(e.schema, String(e.params.tag)))}.`;
    default:
      return "is not valid.";
  }
}

/**
 * The one translation of a schema failure into the error catalogue: a missing
 * (or null) required parameter is `missing_parameter`, anything else
 * `invalid_parameter`, both naming the parameter as the client wrote it
 * (`messages[0].role`). A value is quoted only when it is a short scalar.
 */
function requestError(e: LocatedError): ApiError {
  if (e.keyword === "required") return errors.missingParameter(formatPath([...e.path, String(e.params.missingProperty)]));
  // A discriminator names its tag property, unless the schema words the failure for the whole object.
  const path = e.keyword === "discriminator" && e.problem === undefined ? [...e.path, String(e.params.tag)] : e.path;
  const param = formatPath(path);
  if (param === "") return errors.invalidParameter("body", e.problem ?? "the body must be a JSON object.");
  // null for a required property means it was left out; an array item that is null is just wrong, and so is a
  // null inside a parameter its wording covers (`stop: ["a", null]` has its stop, only not a good one).
  if (e.keyword === "type" && e.value === null && !e.below && typeof path[path.length - 1] === "string") return errors.missingParameter(param);
  return errors.invalidParameter(param, problemText(e));
}

/**
 * A JSON request body checked against its schema. An empty body and one that
 * is not an object are told apart from a wrong parameter, as before any schema.
 */
export function parseBody<T>(compiled: CompiledSchema<T>, body: unknown): T {
  if (body === undefined) throw errors.invalidJson("the body is empty; send a JSON object");
  // A literal null is JSON, just not an object: refused like an array or a string, not as an empty body.
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw errors.invalidParameter("body", "the body must be a JSON object.");
  const result = compiled.check(body);
  if (result.ok) return result.value;
  throw requestError(locateError(compiled.schema as SchemaNode, body, result.error));
}
