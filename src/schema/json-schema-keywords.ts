import { shortened } from "../errors.js";

/**
 * Where a JSON Schema holds other schemas, for code that walks a caller's
 * schema (request checks, grammar building) by schema position: a key of
 * `properties` is a property name, not a keyword, and the values of `enum`,
 * `const` or `default` are data, never schemas.
 */

/** Keywords whose value is a table of subschemas by name. */
export const SCHEMA_TABLES = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"] as const;
/** Keywords whose value is one subschema (`items` also a list, as draft 7 writes a tuple). */
export const SUBSCHEMAS = [
  "items",
  "additionalItems",
  "additionalProperties",
  "contains",
  "propertyNames",
  "not",
  "if",
  "then",
  "else",
  "unevaluatedItems",
  "unevaluatedProperties",
] as const;
/** Keywords whose value is a list of subschemas. */
export const SCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems", "items"] as const;

/** The types a JSON Schema `type` may name. */
export const JSON_TYPES: ReadonlySet<string> = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

export type SchemaObject = Readonly<Record<string, unknown>>;
export const isSchemaObject = (value: unknown): value is SchemaObject => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * A copy of a schema object with each subschema replaced by `map(sub, path)`
 * (`path` like "schema.properties.a", "schema.anyOf[1]"); every other keyword
 * as it is. A keyword whose value is not of a schema's kind is copied too.
 */
export function mapSubschemas(node: SchemaObject, path: string, map: (sub: unknown, path: string) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = { ...node };
  for (const key of SCHEMA_TABLES) {
    const table = node[key];
    if (isSchemaObject(table))
      out[key] = Object.fromEntries(Object.entries(table).map(([name, sub]) => [name, map(sub, `${path}.${key}.${shortened(name)}`)]));
  }
  for (const key of SUBSCHEMAS) if (key in node && !Array.isArray(node[key])) out[key] = map(node[key], `${path}.${key}`);
  for (const key of SCHEMA_LISTS) {
    const list = node[key];
    if (Array.isArray(list)) out[key] = list.map((sub, i) => map(sub, `${path}.${key}[${i}]`));
  }
  return out;
}

const TABLES: ReadonlySet<string> = new Set(SCHEMA_TABLES);
const LISTS: ReadonlySet<string> = new Set(SCHEMA_LISTS);
const SINGLE: ReadonlySet<string> = new Set(SUBSCHEMAS);
const INDEX = /^(0|[1-9][0-9]*)$/;

/**
 * The schema a local `$ref` ("#", "#/$defs/a~1b", "#/properties/billing",
 * "#/anyOf/0") points to in `root`, or undefined when it points to nothing
 * there or to data rather than a schema: it follows schema positions only (a
 * table's entry by name, a list's by index, a subschema), never into `enum`,
 * `const`, `default`, `required` or a list's `length`.
 */
export function resolveSchemaRef(root: unknown, ref: string): { value: unknown } | undefined {
  if (ref === "#") return { value: root };
  if (!ref.startsWith("#/")) return undefined;
  const segments = ref.slice(2).split("/").map(pointerSegment);
  let at: unknown = root;
  for (let i = 0; i < segments.length; i++) {
    const keyword = segments[i];
    if (keyword === undefined || !isSchemaObject(at) || !Object.hasOwn(at, keyword)) return undefined;
    const value = at[keyword];
    if (TABLES.has(keyword) || (LISTS.has(keyword) && Array.isArray(value))) {
      const entry = segments[++i];
      if (entry === undefined || typeof value !== "object" || value === null || !Object.hasOwn(value, entry)) return undefined;
      if (Array.isArray(value) && !INDEX.test(entry)) return undefined;
      at = (value as Record<string, unknown>)[entry];
    } else if (SINGLE.has(keyword)) at = value;
    else return undefined;
  }
  return isSchemaObject(at) || typeof at === "boolean" ? { value: at } : undefined;
}

/** One segment of a JSON pointer in a URI fragment, unescaped (%20, then ~1 and ~0); undefined when malformed. */
export function pointerSegment(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
  } catch {
    return undefined;
  }
}
