import type { ErrorObject } from "ajv/dist/2020.js";
import { PROBLEM, type Problem } from "./builders.js";

/** Where an Ajv error lies in the input, and what the schema says about it. */
export interface LocatedError {
  keyword: string;
  params: Readonly<Record<string, unknown>>;
  /** The schema object that holds the failing keyword. */
  schema: SchemaNode;
  /** The failing value (for `required`: the object missing the property). */
  value: unknown;
  /** Path segments into the input: property names and array indexes. */
  path: PathSegment[];
  /** The schema's own wording for this failure, reported at `path`. */
  problem?: string | undefined;
  /** Whether the failing value lies below `path` (an item or entry of the parameter the wording covers). */
  below: boolean;
}

type PathSegment = string | number;
export type SchemaNode = Readonly<Record<string, unknown>>;

const isNode = (v: unknown): v is SchemaNode => typeof v === "object" && v !== null && !Array.isArray(v);

/** Keywords holding schemas by property name: a step into one reaches a named parameter. */
const NAMED_CHILDREN = new Set(["properties", "patternProperties"]);
/** Keywords whose schema applies one level down in the input (a property's value, a key, an item). */
const ONE_KEY_DEEPER = new Set([
  "additionalProperties",
  "propertyNames",
  "items",
  "prefixItems",
  "contains",
  "unevaluatedProperties",
  "unevaluatedItems",
]);
/** Steps into a property of an object (not an item of an array): that property words its own errors. */
const FORGETS_WORDING = new Set(["additionalProperties", "propertyNames", "unevaluatedProperties"]);

/** A subschema, or a list or table of them (indexable alike). */
const childOf = (node: SchemaNode, key: string): SchemaNode | undefined => {
  const child = Object.hasOwn(node, key) ? node[key] : undefined;
  return typeof child === "object" && child !== null ? (child as SchemaNode) : undefined;
};

const decodePointer = (pointer: string): string[] =>
  pointer === ""
    ? []
    : pointer
        .slice(1)
        .split("/")
        .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));

/** A sentence-form PROBLEM covers the node's items too; a per-keyword one only the node's own keywords. */
function problemOf(node: SchemaNode, keyword: string, ownKeyword: boolean): string | undefined {
  const text = node[PROBLEM] as Problem | undefined;
  if (text === undefined || typeof text === "string") return text;
  return ownKeyword && Object.hasOwn(text, keyword) ? text[keyword] : undefined;
}

/**
 * Follows the error's schema path from the root schema to the failing keyword,
 * counting how deep into the input each step goes, and remembers the innermost
 * schema on the way that words this failure itself (PROBLEM). Stepping into a
 * named property forgets it: that property is a parameter in its own right.
 */
export function locateError(root: SchemaNode, data: unknown, error: ErrorObject): LocatedError {
  const steps = decodePointer(error.schemaPath.replace(/^#/, ""));
  const keyword = error.keyword;
  const instance: PathSegment[] = decodePointer(error.instancePath);
  if (error.propertyName !== undefined) instance.push(error.propertyName);
  let node = root;
  let depth = 0;
  let worded: { problem: string; depth: number } | undefined;
  const consider = (ownKeyword: boolean): void => {
    const text = keyword === "required" ? undefined : problemOf(node, keyword, ownKeyword);
    if (text !== undefined) worded = { problem: text, depth };
  };
  consider(steps.length === 1);
  for (let i = 0; i < steps.length - 1; i++) {
    const step = steps[i] as string;
    const named = NAMED_CHILDREN.has(step);
    let next = childOf(node, step);
    // A list of schemas (oneOf, prefixItems) or a table of them (properties): the next step picks one.
    if (next !== undefined && (Array.isArray(next) || named)) next = childOf(next, steps[++i] as string);
    if (next === undefined) break;
    node = next;
    if (named || ONE_KEY_DEEPER.has(step)) depth++;
    if (named || FORGETS_WORDING.has(step)) worded = undefined;
    consider(i === steps.length - 2);
  }
  const path = instance.slice(0, worded ? worded.depth : instance.length);
  const values = valuesAlong(data, instance);
  return {
    keyword,
    params: error.params,
    schema: node,
    value: error.propertyName ?? values[values.length - 1],
    path: withIndexes(path, values),
    problem: worded?.problem,
    below: path.length < instance.length,
  };
}

/** The input's values from the root down `path` (root first); array indexes become numbers. */
function valuesAlong(data: unknown, path: readonly PathSegment[]): unknown[] {
  const values = [data];
  let current = data;
  for (const segment of path) {
    current = isNode(current) && Object.hasOwn(current, segment) ? current[segment] : Array.isArray(current) ? current[Number(segment)] : undefined;
    values.push(current);
  }
  return values;
}

const withIndexes = (path: readonly PathSegment[], values: readonly unknown[]): PathSegment[] =>
  path.map((segment, i) => (Array.isArray(values[i]) ? Number(segment) : segment));

/** `messages[0].content` from ["messages", 0, "content"]. */
export const formatPath = (path: readonly PathSegment[], prefix = ""): string =>
  path.reduce<string>((out, s) => (typeof s === "number" ? `${out}[${s}]` : out === "" ? s : `${out}.${s}`), prefix);

export const typeName = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/** A value short enough to quote in a message: scalars as JSON, long strings cut, containers by type only. */
export function quoteValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  return typeName(v);
}
