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
}

export type PathSegment = string | number;
export type SchemaNode = Readonly<Record<string, unknown>>;

const isNode = (v: unknown): v is SchemaNode => typeof v === "object" && v !== null && !Array.isArray(v);

const childNode = (node: SchemaNode, key: string): SchemaNode => {
  const child = Object.hasOwn(node, key) ? node[key] : undefined;
  if (!isNode(child) && !Array.isArray(child)) throw new Error(`schema path leads nowhere at '${key}'`);
  return child as SchemaNode;
};

const decodePointer = (pointer: string): string[] =>
  pointer === "" ? [] : pointer.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));

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
    if (step === "properties" || step === "patternProperties") {
      node = childNode(childNode(node, step), steps[++i] as string);
      depth++;
      worded = undefined;
    } else if (step === "additionalProperties" || step === "propertyNames") {
      node = childNode(node, step);
      depth++;
      worded = undefined;
    } else if (step === "items") {
      node = childNode(node, step);
      depth++;
    } else if (step === "oneOf" || step === "anyOf" || step === "allOf") {
      node = childNode(childNode(node, step), steps[++i] as string);
    } else {
      throw new Error(`schema step '${step}' is not supported by the error mapper`);
    }
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
  };
}

/** The input's values from the root down `path` (root first); array indexes become numbers. */
function valuesAlong(data: unknown, path: readonly PathSegment[]): unknown[] {
  const values = [data];
  let current = data;
  for (const segment of path) {
    current = isNode(current) && Object.hasOwn(current, segment) ? current[segment]
      : Array.isArray(current) ? current[Number(segment)]
      : undefined;
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
