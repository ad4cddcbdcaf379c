import { ConfigError } from "./config-error.js";

/** Typed reads of config-file fields; each failure names the field's dotted path. */
export type Fields = Record<string, unknown>;

export const isFields = (v: unknown): v is Fields => typeof v === "object" && v !== null && !Array.isArray(v);

export function objectAt(o: Fields, key: string, path: string): Fields | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!isFields(v)) throw new ConfigError(`${path}${key}`, "must be an object");
  return v;
}

export function stringAt(o: Fields, key: string, path: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.length === 0) throw new ConfigError(`${path}${key}`, "must be a non-empty string");
  return v;
}

export function numberAt(
  o: Fields, key: string, path: string,
  range: { min: number; max: number; integer?: boolean },
): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || (range.integer === true && !Number.isInteger(v))) {
    throw new ConfigError(`${path}${key}`, `must be ${range.integer ? "an integer" : "a number"}`);
  }
  if (v < range.min || v > range.max) throw new ConfigError(`${path}${key}`, `must be between ${range.min} and ${range.max}`);
  return v;
}

export function booleanAt(o: Fields, key: string, path: string): boolean | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw new ConfigError(`${path}${key}`, "must be true or false");
  return v;
}

export function stringListAt(o: Fields, key: string, path: string): string[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === "string" && s.length > 0)) {
    throw new ConfigError(`${path}${key}`, "must be a non-empty array of non-empty strings");
  }
  return v as string[];
}

/** Rejects keys the schema does not know, so a typo is an error rather than a silently ignored setting. */
export function onlyKeys(o: Fields, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) throw new ConfigError(`${path}${key}`, `unknown field (expected one of: ${allowed.join(", ")})`);
  }
}
