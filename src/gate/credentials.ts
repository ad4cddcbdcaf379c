import * as crypto from "node:crypto";
import { errors } from "../errors.js";
import type { Mode } from "../store/store.js";

/** The two kinds of key and usage ledger: live traffic and the sandbox. */
export const KEY_MODES = ["live", "test"] as const satisfies readonly Mode[];

export const isKeyMode = (value: unknown): value is Mode => KEY_MODES.some((mode) => mode === value);

const KEY_PREFIX = `alv_(${KEY_MODES.join("|")})_`;
const KEY_PATTERN = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{32,128}$`);
const HOLDS_KEY = new RegExp(KEY_PREFIX);

const STARTS_AS_KEY = new RegExp(`^${KEY_PREFIX}`);

/**
 * The key prefix (`alv_live_` or `alv_test_`) a credential starts with, whatever follows; undefined for any
 * other. The admin token may never start so (refused at start), so such a credential is never the admin token.
 */
export const keyPrefixOf = (credential: string): string | undefined => STARTS_AS_KEY.exec(credential)?.[0];

/** Whether a text carries what looks like an API key (anywhere in it): such a text is never echoed or logged. */
export const holdsKey = (text: string): boolean => HOLDS_KEY.test(text);

const KEYS_IN_TEXT = new RegExp(`(${KEY_PREFIX})[0-9A-Za-z]+`, "g");
/** The text with what looks like an API key cut to its prefix (a path someone put a key in, for the log). */
export const withoutKeys = (text: string): string => (holdsKey(text) ? text.replace(KEYS_IN_TEXT, "$1…") : text);

/** Node's one-shot hash (20.12 and later): a third of createHash's cost, run once per request. */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: "hex") => string }).hash;

/** Keys are stored and looked up by this hash only. */
export const hashKey = (key: string): string =>
  oneShotHash === undefined ? crypto.createHash("sha256").update(key).digest("hex") : oneShotHash("sha256", key, "hex");

/** The mode a well-formed key claims, or undefined for anything malformed. */
export function keyMode(key: string): Mode | undefined {
  const m = KEY_PATTERN.exec(key);
  return m === null ? undefined : (m[1] as Mode);
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The token of an `Authorization: Bearer …` header; undefined when absent or in any other shape. */
export const bearerToken = (header: string | undefined): string | undefined => (header === undefined ? undefined : BEARER.exec(header)?.[1]);

/** The mode a caller named ("live" when absent); a 400 naming `mode` for anything else. */
export function requestedMode(value: unknown): Mode {
  const mode = value ?? "live";
  if (!isKeyMode(mode)) throw errors.invalidParameter("mode", "must be live or test.");
  return mode;
}
