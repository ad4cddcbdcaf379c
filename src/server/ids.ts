import { randomBytes } from "node:crypto";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Random base62 text from the crypto RNG (rejection sampling keeps it unbiased). */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

export const completionId = (): string => `chatcmpl-${randomBase62(24)}`;
export const inferenceId = (): string => `inf-${randomBase62(24)}`;
export const requestId = (): string => `req_${randomBase62(20)}`;
