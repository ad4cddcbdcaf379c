import { errors } from "../errors.js";
import { quoteValue } from "../schema/locate.js";
import {
  isSchemaObject as isObject,
  JSON_TYPES,
  mapSubschemas,
  resolveSchemaRef,
  SCHEMA_LISTS,
  SCHEMA_TABLES,
  SUBSCHEMAS,
  type SchemaObject,
} from "../schema/json-schema-keywords.js";

/**
 * How big a caller's JSON schema may be. Grammar building runs on the event
 * loop and its cost grows with the schema; within these bounds the worst
 * schema builds in tens of milliseconds (bench/grammar-build.ts).
 */
export interface JsonSchemaLimits {
  maxBytes: number;
  maxDepth: number;
  maxDocumentDepth: number;
  maxEnumValues: number;
  maxProperties: number;
  maxTotalProperties: number;
}

export const JSON_SCHEMA_LIMITS: Readonly<JsonSchemaLimits> = {
  /** Characters of the schema serialized as JSON. */
  maxBytes: 32 * 1024,
  /**
   * Levels of the answer's nested objects and arrays, the schema itself being level 1: each property's or item's
   * schema is one level down; `anyOf`, `allOf`, `not` and the like describe the same level.
   */
  maxDepth: 32,
  /** Levels of the schema as a JSON document (its keywords' own objects and lists count): bounds every walk of it. */
  maxDocumentDepth: 160,
  /** Values of one `enum`. */
  maxEnumValues: 512,
  /** Entries of one `properties` (or `$defs`, `patternProperties`) object. */
  maxProperties: 256,
  /** Entries of all of them together: many small objects cost as much to compile as one big one. */
  maxTotalProperties: 512,
};

/**
 * How big the parameter schemas of all of a request's tools may be together:
 * every tool's schema goes into one grammar, so within each tool's own limits
 * 128 tools could otherwise cost 128 times the worst single schema to build.
 */
export const TOOLS_SCHEMA_LIMITS = { maxBytes: 128 * 1024, maxTotalProperties: 2048 } as const;

/** What a schema within its limits holds, for totals over several schemas. */
export interface SchemaSize {
  bytes: number;
  properties: number;
}

/** Refuses tools whose schemas, each within its own limits, are over the tools' limits together. */
export function checkToolSchemasTotal(sizes: readonly SchemaSize[], param: string): void {
  const bytes = sizes.reduce((n, s) => n + s.bytes, 0);
  const properties = sizes.reduce((n, s) => n + s.properties, 0);
  const refuse = (what: string): never => {
    throw errors.invalidParameter(param, `the tools' schemas are too large together: ${what}. Simplify them or send fewer tools.`);
  };
  if (properties > TOOLS_SCHEMA_LIMITS.maxTotalProperties) {
    refuse(`they have more than ${TOOLS_SCHEMA_LIMITS.maxTotalProperties} properties in all (the limit)`);
  }
  if (bytes > TOOLS_SCHEMA_LIMITS.maxBytes) refuse(`they are ${bytes} characters as JSON, the limit is ${TOOLS_SCHEMA_LIMITS.maxBytes}`);
}

const NAMED_SUBSCHEMAS = new Set(["properties", "$defs", "definitions", "patternProperties"]);
/** Keywords whose subschemas describe a value one level down in the answer: a property's, an item's. */
const LEVEL_DOWN = new Set([
  "properties",
  "patternProperties",
  "additionalProperties",
  "unevaluatedProperties",
  "items",
  "prefixItems",
  "additionalItems",
  "contains",
  "unevaluatedItems",
]);
const TABLES: ReadonlySet<string> = new Set(SCHEMA_TABLES);
const ONE_SCHEMA: ReadonlySet<string> = new Set(SUBSCHEMAS);
const LISTS: ReadonlySet<string> = new Set(SCHEMA_LISTS);

/**
 * One JSON value of the schema on the walk: what it holds (a schema; a table or list of schemas, each at `level`;
 * or data, such as an `enum`'s values, whose nesting counts only as JSON) and how deep it is as JSON and as answer.
 */
interface WalkItem {
  value: unknown;
  depth: number;
  level: number;
  holds: "schema" | "table" | "list" | "data";
}

/** The values inside `value`, each with what it holds and its answer level (its JSON depth is the caller's). */
function childrenOf(value: object, level: number, holds: WalkItem["holds"]): Array<Omit<WalkItem, "depth">> {
  if (holds === "table" || holds === "list") return Object.values(value).map((child) => ({ value: child, level, holds: "schema" as const }));
  if (holds === "data" || Array.isArray(value)) return Object.values(value).map((child) => ({ value: child, level, holds: "data" as const }));
  return Object.entries(value).map(([key, child]) => {
    const at = LEVEL_DOWN.has(key) ? level + 1 : level;
    if (TABLES.has(key)) return { value: child, level: at, holds: "table" as const };
    if (LISTS.has(key) && Array.isArray(child)) return { value: child, level: at, holds: "list" as const };
    if (ONE_SCHEMA.has(key)) return { value: child, level: at, holds: "schema" as const };
    return { value: child, level, holds: "data" as const };
  });
}

/**
 * Refuses a schema over any limit with a 400 naming it. The walk is iterative
 * and stops at the first breach, so a schema nested thousands deep costs
 * nothing more than its first few dozen levels.
 */
export function checkJsonSchemaLimits(schema: unknown, param: string, limits: Readonly<JsonSchemaLimits> = JSON_SCHEMA_LIMITS): SchemaSize {
  const refuse = (what: string): never => {
    throw errors.invalidParameter(param, `the schema is too large: ${what}. Simplify the schema.`);
  };
  const stack: WalkItem[] = [{ value: schema, depth: 1, level: 1, holds: "schema" }];
  let totalProperties = 0;
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { value, depth, level, holds } = item;
    if (typeof value !== "object" || value === null) continue;
    if (depth > limits.maxDocumentDepth) refuse(`it nests more than ${limits.maxDocumentDepth} levels of JSON (the limit)`);
    if (holds === "schema" && level > limits.maxDepth) refuse(`it nests more than ${limits.maxDepth} levels of objects and arrays (the limit)`);
    if (!Array.isArray(value)) {
      for (const [key, child] of Object.entries(value)) {
        if (key === "enum" && Array.isArray(child) && child.length > limits.maxEnumValues) {
          refuse(`an enum has ${child.length} values, the limit is ${limits.maxEnumValues}`);
        }
        if (key === "enum" && Array.isArray(child) && child.length === 0) {
          throw errors.invalidParameter(param, "an enum must hold at least one value: no answer can meet an empty one.");
        }
        if (NAMED_SUBSCHEMAS.has(key) && typeof child === "object" && child !== null) {
          const count = Object.keys(child).length;
          if (count > limits.maxProperties) refuse(`'${key}' has ${count} entries, the limit is ${limits.maxProperties}`);
          totalProperties += count;
          if (totalProperties > limits.maxTotalProperties) refuse(`it has more than ${limits.maxTotalProperties} properties in all (the limit)`);
        }
      }
    }
    for (const child of childrenOf(value, level, holds)) stack.push({ ...child, depth: depth + 1 });
  }
  // Safe to serialize (and to recurse into) now that the depth is bounded.
  const size = JSON.stringify(schema).length;
  if (size > limits.maxBytes) refuse(`it is ${size} characters as JSON, the limit is ${limits.maxBytes}`);
  checkSchema(schema, "schema", param, schema);
  return { bytes: size, properties: totalProperties };
}

/** A list no value can meet when empty: a value must match one of `anyOf`/`oneOf`, and have one of the `type`s. */
const NON_EMPTY_LISTS = ["anyOf", "oneOf", "allOf", "type"];
const BOUNDS = [
  ["minLength", "maxLength"],
  ["minItems", "maxItems"],
  ["minProperties", "maxProperties"],
  ["minContains", "maxContains"],
  ["minimum", "maximum"],
] as const;
const COUNTS = ["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains"];
/** Numbers; draft 4 wrote the exclusive bounds as booleans beside minimum and maximum. */
const NUMBERS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const TEXTS = ["$ref", "pattern", "format", "title", "description", "$id", "$schema", "$comment", "$anchor"];

/** An ECMA-262 regular expression, as JSON Schema's patterns are; with or without Unicode mode, as validators differ. */
function isRegExp(pattern: string): boolean {
  for (const flags of ["u", ""]) {
    try {
      new RegExp(pattern, flags);
      return true;
    } catch {
      // the other mode
    }
  }
  return false;
}

const isSchema = (value: unknown): boolean => isObject(value) || typeof value === "boolean";
const isCount = (value: unknown): boolean => typeof value === "number" && Number.isInteger(value) && value >= 0;

/**
 * Refuses a schema that is not a JSON Schema (a keyword's value of the wrong
 * kind: an `enum` that is not a list, a `minLength` of -1, `properties` that
 * hold something other than schemas), a `$ref` that points nowhere in it, and
 * one that no answer can meet (an empty `anyOf`, a `minLength` over its
 * `maxLength`). A grammar would serve something else (node-llama-cpp reads a
 * broken keyword as absent and a dangling reference as any JSON), and an
 * upstream would fail it. Only schema positions are read, never the values of
 * `enum`, `const` or `default`.
 */
function checkSchema(node: unknown, path: string, param: string, root: unknown): void {
  // A subschema's own kind is checked by its parent's keyword (a true or false schema holds nothing more to check).
  if (!isObject(node)) return;
  const malformed = (key: string, what: string): never => {
    throw errors.invalidParameter(param, `this is not a JSON Schema: '${key}' at ${path} must be ${what}.`);
  };
  const unmeetable = (what: string): never => {
    throw errors.invalidParameter(param, `no answer can meet the schema: ${what} at ${path}.`);
  };
  for (const key of SCHEMA_TABLES) {
    if (key in node && (!isObject(node[key]) || !Object.values(node[key] as SchemaObject).every(isSchema))) {
      malformed(key, "an object of schemas");
    }
  }
  for (const key of SUBSCHEMAS) if (key in node && !isSchema(node[key]) && !(key === "items" && Array.isArray(node[key]))) malformed(key, "a schema");
  for (const key of SCHEMA_LISTS) {
    if (key in node && (key !== "items" || Array.isArray(node[key])) && !(Array.isArray(node[key]) && (node[key] as unknown[]).every(isSchema))) {
      malformed(key, "a list of schemas");
    }
  }
  for (const key of COUNTS) if (key in node && !isCount(node[key])) malformed(key, "a whole number, 0 or more");
  for (const key of NUMBERS) {
    const value = node[key];
    if (key in node && typeof value !== "number" && !(key.startsWith("exclusive") && typeof value === "boolean")) malformed(key, "a number");
  }
  if (typeof node.multipleOf === "number" && !(node.multipleOf > 0)) malformed("multipleOf", "more than 0");
  for (const key of TEXTS) if (key in node && typeof node[key] !== "string") malformed(key, "a string");
  if (typeof node.pattern === "string" && !isRegExp(node.pattern))
    malformed("pattern", `a regular expression (${quoteValue(node.pattern)} is not one)`);
  if (isObject(node.patternProperties)) {
    const bad = Object.keys(node.patternProperties).find((p) => !isRegExp(p));
    if (bad !== undefined) malformed("patternProperties", `keyed by regular expressions (${quoteValue(bad)} is not one)`);
  }
  if ("enum" in node && !Array.isArray(node.enum)) malformed("enum", "a list");
  if ("uniqueItems" in node && typeof node.uniqueItems !== "boolean") malformed("uniqueItems", "true or false");
  if ("required" in node && (!Array.isArray(node.required) || !node.required.every((name) => typeof name === "string"))) {
    malformed("required", "a list of property names");
  }
  if ("type" in node) {
    const types: unknown[] = Array.isArray(node.type) ? node.type : [node.type];
    const unknown = types.find((t) => typeof t !== "string" || !JSON_TYPES.has(t));
    if (unknown !== undefined) malformed("type", `one of ${[...JSON_TYPES].join(", ")} (or a list of them), not ${quoteValue(unknown)}`);
  }
  if (typeof node.$ref === "string") {
    // Along schema positions only: a pointer into a list of names or an enum's values lands on data, not a schema.
    if (resolveSchemaRef(root, node.$ref) === undefined) {
      throw errors.invalidParameter(
        param,
        `'$ref' at ${path} is ${quoteValue(node.$ref)}, which points to no schema in this one: refer to a definition in it ('#/$defs/name').`,
      );
    }
  }

  for (const key of NON_EMPTY_LISTS) {
    const list = node[key];
    if (Array.isArray(list) && list.length === 0) unmeetable(`'${key}' is an empty list`);
  }
  for (const [min, max] of BOUNDS) {
    const low = node[min];
    const high = node[max];
    if (typeof low === "number" && typeof high === "number" && low > high) unmeetable(`${min} (${low}) is more than ${max} (${high})`);
  }
  mapSubschemas(node, path, (sub, at) => checkSchema(sub, at, param, root));
}
