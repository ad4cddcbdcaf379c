import { errors } from "../errors.js";
import { requiredString, type JsonObject } from "../server/validate.js";

/**
 * The longest value each string field of a dashboard or admin request may have.
 * Checked before anything else happens, so no oversized value is ever hashed,
 * looked up or remembered.
 */
export const FIELD_LIMITS = {
  email: 254,
  password: 1024,
  token: 1024,
  name: 200,
  keyName: 100,
  plan: 64,
  mode: 16,
  status: 16,
} as const;

/** A required string no longer than `max` characters; 400 naming the field otherwise. */
export function boundedString(body: JsonObject, name: string, max: number): string {
  const value = requiredString(body, name);
  if (value.length > max) throw errors.invalidParameter(name, `must be at most ${max} characters.`);
  return value;
}

/** Like boundedString, but absent (or null) is undefined. */
export function optionalBoundedString(body: JsonObject, name: string, max: number): string | undefined {
  return body[name] === undefined || body[name] === null ? undefined : boundedString(body, name, max);
}

/**
 * A linear check that a string looks like an e-mail address: one "@", a local part
 * of 1–64 characters, a domain of two or more non-empty labels, no whitespace.
 * (A backtracking regular expression took seconds on 40,000 dots.)
 */
export function isEmailAddress(s: string): boolean {
  const at = s.indexOf("@");
  if (at <= 0 || at > 64 || at !== s.lastIndexOf("@") || /\s/.test(s)) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
  }
  let labels = 0;
  let labelStart = at + 1;
  for (let i = labelStart; i <= s.length; i++) {
    if (i === s.length || s[i] === ".") {
      const length = i - labelStart;
      if (length === 0 || length > 63) return false;
      labels++;
      labelStart = i + 1;
    }
  }
  return labels >= 2;
}
