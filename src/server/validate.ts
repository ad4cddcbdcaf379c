import { errors } from "../errors.js";

/**
 * Small checkers for JSON request bodies. Each names the offending parameter in
 * its error so the client's message says exactly what to fix. `null` counts as
 * absent for optional parameters, as in OpenAI's API.
 */
export type JsonObject = Record<string, unknown>;

export const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** A body's own field only: a name must never reach Object.prototype. */
export const field = (o: JsonObject, name: string): unknown => (Object.hasOwn(o, name) ? o[name] : undefined);

export function bodyObject(body: unknown): JsonObject {
  if (body === undefined || body === null) throw errors.invalidJson("the body is empty; send a JSON object");
  if (!isObject(body)) throw errors.invalidParameter("body", "the body must be a JSON object.");
  return body;
}

const typeName = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

const PREVIEW_CHARS = 40;

/**
 * A short, safe rendering of a caller's value for an error message: never the
 * whole of an unbounded input (a megabyte string, an array nested 100,000 deep).
 */
export function preview(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > PREVIEW_CHARS ? `${v.slice(0, PREVIEW_CHARS)}…` : v);
  if (typeof v === "number" || typeof v === "boolean" || v === null) return String(v);
  return typeName(v);
}

export function requiredString(o: JsonObject, name: string, param = name): string {
  const v = field(o, name);
  if (v === undefined || v === null) throw errors.missingParameter(param);
  if (typeof v !== "string") throw errors.invalidParameter(param, `expected a string, got ${typeName(v)}.`);
  return v;
}

interface NumberRange {
  min: number;
  max: number;
  /** The minimum itself is not allowed (top_p must be > 0). */
  exclusiveMin?: boolean;
  integer?: boolean;
}

export function optionalNumber(o: JsonObject, name: string, range: NumberRange, param = name): number | undefined {
  const v = field(o, name);
  if (v === undefined || v === null) return undefined;
  const kind = range.integer ? "an integer" : "a number";
  if (typeof v !== "number" || !Number.isFinite(v) || (range.integer && !Number.isInteger(v))) {
    throw errors.invalidParameter(param, `expected ${kind}, got ${typeof v === "object" ? typeName(v) : `${typeName(v)} ${preview(v)}`}.`);
  }
  const low = range.exclusiveMin ? v <= range.min : v < range.min;
  if (low || v > range.max) {
    const lower = range.exclusiveMin ? `greater than ${range.min}` : `at least ${range.min}`;
    throw errors.invalidParameter(param, `must be ${lower} and at most ${range.max}, got ${v}.`);
  }
  return v;
}

export function optionalBoolean(o: JsonObject, name: string, param = name): boolean | undefined {
  const v = field(o, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw errors.invalidParameter(param, `expected a boolean, got ${typeName(v)}.`);
  return v;
}

export function optionalObject(o: JsonObject, name: string, param = name): JsonObject | undefined {
  const v = field(o, name);
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw errors.invalidParameter(param, `expected an object, got ${typeName(v)}.`);
  return v;
}

/** The sampling parameters shared by both inference routes (DESIGN.md ranges). */
export const SAMPLING = {
  maxTokens: { min: 1, max: 4096, integer: true },
  temperature: { min: 0, max: 2 },
  topP: { min: 0, max: 1, exclusiveMin: true },
  seed: { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, integer: true },
} as const satisfies Record<string, NumberRange>;
