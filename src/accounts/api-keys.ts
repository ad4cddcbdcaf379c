import { randomBase62 } from "../ids.js";
import type { Mode } from "../store/store.js";
import { hashKey } from "../gate/credentials.js";

const SECRET_LENGTH = 40;
const DISPLAY_LENGTH = 13;

export interface NewKey {
  /** The secret: shown to its owner once, never stored. */
  key: string;
  hash: string;
  prefix: string;
}

/** `alv_live_` or `alv_test_` and 40 base62 characters (about 238 bits) from the crypto RNG. */
export function generateKey(mode: Mode): NewKey {
  const key = `alv_${mode}_${randomBase62(SECRET_LENGTH)}`;
  return { key, hash: hashKey(key), prefix: `${key.slice(0, DISPLAY_LENGTH)}…` };
}
