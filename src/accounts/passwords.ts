import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/** The inputs of one scrypt key derivation besides the password and salt. */
export interface ScryptParameters {
  N: number;
  r: number;
  p: number;
  keyLength: number;
}

/** One key derivation; injectable so tests can observe that every sign-in path does the same work. */
export type KeyDerivation = (password: string, salt: Buffer, parameters: ScryptParameters) => Promise<Buffer>;

/** N=2^15, r=8 uses 32 MiB and ~50 ms per hash: costly for a guesser, fine for a sign-in. */
const CURRENT_SCRYPT: Readonly<ScryptParameters> = { N: 32768, r: 8, p: 1, keyLength: 32 };
const SALT_LENGTH = 16;
const MAX_MEMORY = 64 * 1024 * 1024;

export const scryptDerivation: KeyDerivation = (password, salt, { N, r, p, keyLength }) =>
  new Promise((resolve, reject) =>
    scrypt(password, salt, keyLength, { N, r, p, maxmem: MAX_MEMORY }, (error, key) => (error ? reject(error) : resolve(key))),
  );

/**
 * Password hashes as "scrypt$N$r$p$salt$hash" (base64), so parameters can be
 * raised later without breaking old hashes.
 */
export class Passwords {
  /** A real hash of a random password, checked against when there is no member, so that path costs exactly what a wrong password costs. */
  private readonly decoy: Promise<string>;

  constructor(private readonly derive: KeyDerivation = scryptDerivation) {
    this.decoy = this.hash(randomBytes(32).toString("base64"));
    this.decoy.catch(() => undefined);
  }

  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_LENGTH);
    const { N, r, p } = CURRENT_SCRYPT;
    const key = await this.derive(password, salt, CURRENT_SCRYPT);
    return `scrypt$${N}$${r}$${p}$${salt.toString("base64")}$${key.toString("base64")}`;
  }

  /** Checks a password against a stored hash, or against the decoy when there is none (always false then). */
  async verify(password: string, stored: string | null | undefined): Promise<boolean> {
    const real = typeof stored === "string";
    const [scheme, n, r, p, salt, hash] = (real ? stored : await this.decoy).split("$");
    if (scheme !== "scrypt" || salt === undefined || hash === undefined) return false;
    const expected = Buffer.from(hash, "base64");
    const key = await this.derive(password, Buffer.from(salt, "base64"), { N: Number(n), r: Number(r), p: Number(p), keyLength: expected.length });
    return real && key.length === expected.length && timingSafeEqual(key, expected);
  }
}
