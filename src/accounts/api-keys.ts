import { createHash } from "node:crypto";
import { randomBase62 } from "../ids.js";
import type { Mode } from "../store/store.js";
import { KEY_MODES } from "../gate/credentials.js";

const KEY_PATTERN = new RegExp(`^alv_(${KEY_MODES.join("|")})_[0-9A-Za-z]{32,128}$`);
const SECRET_LENGTH = 40;
const DISPLAY_LENGTH = 13;

export interface NewKey {
  /** The secret: shown to its owner once, never stored. */
  key: string;
  hash: string;
  prefix: string;
}

export const hashKey = (key: string): string => createHash("sha256").update(key).digest("hex");

/** `alv_live_` or `alv_test_` and 40 base62 characters (about 238 bits) from the crypto RNG. */
export function generateKey(mode: Mode): NewKey {
  const key = `alv_${mode}_${randomBase62(SECRET_LENGTH)}`;
  return { key, hash: hashKey(key), prefix: `${key.slice(0, DISPLAY_LENGTH)}…` };
}

/** The mode a well-formed key claims, or undefined for anything malformed. */
export function keyMode(key: string): Mode | undefined {
  const m = KEY_PATTERN.exec(key);
  return m === null ? undefined : (m[1] as Mode);
}
