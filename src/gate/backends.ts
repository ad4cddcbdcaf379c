/**
 * The parts behind the gate that hold shared state. Each is async and takes
 * one atomic step per call, so a shared implementation (Redis, PostgreSQL) can
 * replace today's in-process ones without changing the gate.
 */
import type { KeyLookup } from "../store/store.js";
import type { Caller, Endpoint, Outcome } from "./gate.js";

/** A key's per-key limits under its plan. */
export interface KeyLimits {
  requests: { limit: number; windowMs: number };
  /** Prompt + completion tokens per window; absent: no token cap. */
  tokens?: { limit: number; windowMs: number } | undefined;
  /** Requests in flight at once; absent: no concurrency cap. */
  maxConcurrent?: number | undefined;
}

/** One window as the x-ratelimit-* headers show it. */
export interface LimitState {
  limit: number;
  remaining: number;
  /** Milliseconds until the window is entirely clear again. */
  resetMs: number;
}

/** The windows of one key: requests always, tokens when the plan caps them. */
export interface LimitReport {
  requests: LimitState;
  tokens?: LimitState | undefined;
}

export type LimitName = "requests" | "tokens" | "concurrency";

/** A counted request's hold on its key's limits, released exactly once. */
export interface KeyLease {
  /** The request ended: frees its concurrency slot and settles its token reservation to the tokens it really used. */
  settle(tokens: number): Promise<void>;
  /** The request was refused after all (monthly quota): takes back all it counted. */
  cancel(): Promise<void>;
}

export type Acquisition =
  | {
      granted: true;
      report: LimitReport;
      lease: KeyLease;
      /** True when the limiter also counted the request in the monthly counter it was given (see CounterStep). */
      counted?: boolean;
    }
  /**
   * `monthly`: the windows would let it in, but the CounterStep given is at its limit, or missing
   * (`counterMissing`: to be seeded from the ledger); nothing was counted.
   */
  | { granted: false; report: LimitReport; refusedBy: LimitName | "monthly"; retryAfterMs: number; counterMissing?: boolean };

/**
 * A monthly counter kept in the limiter's own store, which the limiter may
 * count in the same atomic step as the key's limits: one round trip instead
 * of two. Only counted when the limits grant the request and the counter
 * exists; a counter at `limit`, or missing, refuses the request (`monthly`),
 * counting nothing, so a request over the quota never holds a place in the
 * windows.
 */
export interface CounterStep {
  key: string;
  limit: number;
}

/**
 * Per-key limits: the request window, the token window and the concurrency
 * cap, checked and counted together in one step, so no concurrent request
 * slips between a check and its count and a refusal counts nothing.
 */
export interface RateLimiter {
  /** Looks without counting (headers on routes that consume nothing). */
  peek(keyId: string, limits: KeyLimits): Promise<LimitReport>;
  /** Checks every limit and, only when all allow, counts the request in all of them (and in `counter`, when it can). */
  acquire(keyId: string, limits: KeyLimits, reserveTokens: number, counter?: CounterStep): Promise<Acquisition>;
}

export interface QuotaRequest {
  requestId: string;
  caller: Caller;
  specialistId: string;
  endpoint: Endpoint;
  /** The plan's requests per month for the caller's account and mode. */
  limit: number;
  at: Date;
}

/** A request counted against its account's quota; `finish` records its outcome (and gives it back when it does not count). */
export interface QuotaTicket {
  finish(outcome: Outcome): Promise<void>;
}

/** The monthly quota per account and mode, and the ledger record of each admitted request. */
export interface QuotaCounter {
  /**
   * Counts the request and records its admission, atomically; undefined when
   * the quota is reached. `counted`: the limiter already counted it through
   * this counter's `counterStep`, so only the admission is recorded.
   */
  take(request: QuotaRequest, counted?: boolean): Promise<QuotaTicket | undefined>;
  /** The counter a limiter on the same store may count in its own step; absent when it cannot. */
  counterStep?(request: QuotaRequest): CounterStep | undefined;
  /**
   * The counterStep's counter refused: a missing one is seeded from the ledger (true: try again); one at
   * its limit, whether the ledger has room after all (requests given back since, such as a dead node's),
   * the counter then set to the ledger's count. The ledger is asked at most so often.
   */
  hasRoom?(request: QuotaRequest, counterMissing: boolean): Promise<boolean>;
}

/** Verified keys, looked up by hash, and their invalidation. */
export interface KeyCache {
  /** The key with this hash and what authentication needs of its account; undefined for an unknown key. */
  find(hash: string): Promise<KeyLookup | undefined>;
  /** A key was revoked or an account's plan or status changed: no cached copy may be used again. */
  invalidate(): Promise<void>;
}

/**
 * A started attempt (its id, for `settle`), or a refusal: `retryAfterMs` until the keys may try again, and
 * `busy` when only attempts still being checked fill the places (a failure-free key waits for them briefly).
 */
export type AttemptResult = { counted: true; id: string } | { counted: false; retryAfterMs: number; busy: boolean };

/** What an attempt refused only for attempts still being checked is told to wait: a password check takes ~0.1 s. */
export const BUSY_RETRY_MS = 1000;

/** The counters sign-ins keep: member e-mail and address pairs, e-mails and addresses alone, and admin-token guesses. */
export type FailureKind = "member" | "member-spread" | "operator";

export interface FailureLogLimits {
  /** Failures a key may have within the window before it is refused. */
  allowed: number;
  windowMs: number;
  /** Keys kept at most; beyond it the least recently failed are forgotten first. */
  maxKeys: number;
}

/**
 * Failed attempts per key within a sliding window: this process's FailureLog,
 * or a shared one in Redis when several nodes serve the same dashboard.
 *
 * An attempt takes a place before its password or token is checked, atomically
 * with the check of the limit, so concurrent guesses cannot all pass the check
 * before any of them is counted: failures within the window and attempts still
 * being checked together are at most `allowed`. Settling the attempt frees its
 * place and, for a failure, counts the failure.
 */
export interface FailureCounter {
  /** Starts an attempt on every key unless they are used up; refused, nothing is counted. */
  attempt(keys: readonly string[], now: number): AttemptResult | Promise<AttemptResult>;
  /** Ends an attempt started on `keys`: `failed`, it counts as a failure at `now`; otherwise it leaves no trace. */
  settle(keys: readonly string[], id: string, failed: boolean, now: number): void | Promise<void>;
  /** Milliseconds until the key's failures let it try again, or 0; counts nothing. */
  retryAfterMs(key: string, now: number): number | Promise<number>;
  clear(key: string): void | Promise<void>;
  /** Keys held in this process (none for a shared counter). */
  readonly size: number;
}
