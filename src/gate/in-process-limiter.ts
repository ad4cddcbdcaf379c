import type { Acquisition, KeyLimits, LimitName, LimitReport, RateLimiter } from "./backends.js";
import { AdmissionLog, type WindowState } from "./minute-limiter.js";
import { TokenWindow, type TokenWindowState } from "./token-window.js";

/**
 * What a request refused for concurrency is told to wait: a slot frees when
 * one of the key's requests ends, which no one can know in advance, so the
 * shortest wait Retry-After can express.
 */
export const CONCURRENCY_RETRY_MS = 1000;

class KeyState {
  inFlight = 0;
  readonly tokens = new TokenWindow();
  constructor(public requests: AdmissionLog) {}
}

const stateOf = (w: WindowState | TokenWindowState) => ({ limit: w.limit, remaining: w.remaining, resetMs: w.resetMs });

/** Per-key limits in this process's memory: exact within one process. */
export class InProcessRateLimiter implements RateLimiter {
  private readonly keys = new Map<string, KeyState>();

  /** `clock` in milliseconds; tests inject their own instead of waiting out real windows. */
  constructor(private readonly clock: () => number = () => performance.timeOrigin + performance.now()) {}

  private key(keyId: string, limits: KeyLimits): KeyState {
    let state = this.keys.get(keyId);
    if (state === undefined) {
      state = new KeyState(new AdmissionLog(limits.requests.limit));
      this.keys.set(keyId, state);
    } else if (state.requests.limit !== limits.requests.limit) {
      // The plan changed: its window starts afresh at the new size.
      state.requests = new AdmissionLog(limits.requests.limit);
    }
    return state;
  }

  async peek(keyId: string, limits: KeyLimits): Promise<LimitReport> {
    const now = this.clock();
    const key = this.key(keyId, limits);
    const requests = key.requests.check(now, limits.requests.windowMs);
    const tokens = limits.tokens && key.tokens.check(now, limits.tokens.windowMs, limits.tokens.limit, 0);
    return { requests: stateOf(requests), tokens: tokens && stateOf(tokens) };
  }

  async acquire(keyId: string, limits: KeyLimits, reserveTokens: number): Promise<Acquisition> {
    const now = this.clock();
    const key = this.key(keyId, limits);
    const requests = key.requests.check(now, limits.requests.windowMs);
    const tokens = limits.tokens && key.tokens.check(now, limits.tokens.windowMs, limits.tokens.limit, reserveTokens);
    const refusals: Array<[LimitName, number]> = [];
    if (!requests.allowed) refusals.push(["requests", requests.retryAfterMs]);
    if (tokens !== undefined && !tokens.allowed) refusals.push(["tokens", tokens.retryAfterMs]);
    if (limits.maxConcurrent !== undefined && key.inFlight >= limits.maxConcurrent) refusals.push(["concurrency", CONCURRENCY_RETRY_MS]);
    const [first] = refusals;
    if (first !== undefined) {
      // The longest of the waits: after it, every limit that refused lets the request in.
      const retryAfterMs = Math.max(...refusals.map(([, ms]) => ms));
      return { granted: false, report: { requests: stateOf(requests), tokens: tokens && stateOf(tokens) }, refusedBy: first[0], retryAfterMs };
    }

    key.requests.record(now);
    const hold = tokens && key.tokens.record(now, reserveTokens);
    key.inFlight++;
    let open = true;
    const end = (): boolean => {
      if (!open) return false;
      open = false;
      key.inFlight--;
      return true;
    };
    const report: LimitReport = {
      requests: { limit: requests.limit, remaining: requests.remaining - 1, resetMs: limits.requests.windowMs },
      tokens: tokens && limits.tokens && { limit: tokens.limit, remaining: tokens.remaining - reserveTokens, resetMs: limits.tokens.windowMs },
    };
    return {
      granted: true,
      report,
      lease: {
        settle: async (used: number) => {
          if (end()) hold?.settle(used);
        },
        cancel: async () => {
          if (!end()) return;
          key.requests.unrecord(now);
          hold?.settle(0);
        },
      },
    };
  }
}
