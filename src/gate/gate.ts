import type { ApiError } from "../errors.js";
import type { LimitReport } from "./backends.js";

/** Who is calling, once the gate has authenticated the request. */
export interface Caller {
  accountId: string;
  keyId: string;
  mode: "live" | "test";
  plan: string;
  /** The key's hash and when it was checked (performance.now()): a request admitted long after is checked again. */
  keyHash?: string | undefined;
  authenticatedAt?: number | undefined;
}

/** How an admitted inference request ended, for metering and quota. */
export interface Outcome {
  status: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
}

/** A request let through to an engine; `finish` must be called exactly once when it ends. */
export interface Admission {
  finish(outcome: Outcome): Promise<void>;
  /** The admitted caller's account: whose cached prompt state the request may reuse (absent with no accounts). */
  readonly accountId?: string | undefined;
}

export type Endpoint = "infer" | "chat.completions" | "embeddings";

/**
 * The most tokens a request may use, reserved against the key's token cap at
 * admission and settled to the real count when it ends.
 */
export interface TokenReservation {
  /** An upper bound of the prompt's tokens (they are only counted once the prompt is formatted). */
  promptTokens: number;
  /** max_tokens × n. */
  completionTokens: number;
}

export interface AdmitOptions {
  /** A function when the bound costs work: it is computed only for a plan that caps tokens. */
  reserveTokens?: TokenReservation | (() => TokenReservation) | undefined;
}

/** An authenticated caller and its key's windows (for the x-ratelimit-* headers; absent when not asked for). */
export interface Authentication {
  caller: Caller;
  limits?: LimitReport | undefined;
}

export interface AuthenticateOptions {
  /** Look up the key's windows too (default). The HTTP layer asks later, only for responses that did not admit. */
  limits?: boolean | undefined;
}

/** The gate's answer to one request: let through, or the catalogue error to answer with. */
export type AdmitDecision =
  { admitted: true; admission: Admission; limits?: LimitReport | undefined } | { admitted: false; error: ApiError; limits?: LimitReport | undefined };

/**
 * What stands in front of the /v1 routes: authentication, plan, limits and
 * metering. It knows nothing of HTTP frameworks: an adapter turns its answers
 * into headers and error responses, so an open gate (no accounts) and the full
 * gate are interchangeable.
 */
export interface Gate {
  /** Checks the Authorization header's value; throws the 401 of the catalogue. Undefined: no accounts, anyone may call. */
  authenticate(authorization: string | undefined, options?: AuthenticateOptions): Promise<Authentication | undefined>;
  /** The caller's windows as they stand, counting nothing (headers of responses that admitted nothing). */
  limits(caller: Caller | undefined): Promise<LimitReport | undefined>;
  /** Whether the caller may use the specialist (models list, 403 check). */
  allows(caller: Caller | undefined, specialistId: string): boolean;
  /** Checks plan, per-key limits and monthly quota, and counts the request when all allow. */
  admit(caller: Caller | undefined, specialistId: string, endpoint: Endpoint, requestId: string, options?: AdmitOptions): Promise<AdmitDecision>;
  close(): Promise<void>;
}

const NO_ADMISSION: Admission = { finish: () => Promise.resolve() };

/** Lets every request through: the server before accounts exist, and the gate-off benchmark baseline. */
export const openGate: Gate = {
  authenticate: () => Promise.resolve(undefined),
  limits: () => Promise.resolve(undefined),
  allows: () => true,
  admit: () => Promise.resolve({ admitted: true, admission: NO_ADMISSION }),
  close: () => Promise.resolve(),
};
