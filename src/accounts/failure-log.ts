import { BUSY_RETRY_MS, type AttemptResult, type FailureCounter, type FailureKind, type FailureLogLimits } from "../gate/backends.js";

export type { AttemptResult, FailureCounter, FailureKind, FailureLogLimits };

/**
 * Failed sign-ins per key (an e-mail, a client address) within a sliding window.
 * Reads store nothing, each key keeps at most `allowed` timestamps, and the number
 * of keys is capped, so a flood of distinct e-mails cannot grow it without bound.
 */
export class FailureLog implements FailureCounter {
  /** Ordered by last failure, oldest first: a key is re-inserted whenever it fails. */
  private readonly failures = new Map<string, number[]>();
  /** Attempts being checked now, per key: as many entries as requests in flight, each gone when it settles. */
  private readonly pending = new Map<string, number>();

  constructor(private readonly limits: FailureLogLimits) {}

  /** Milliseconds until the key may try again, or 0 when it may try now. */
  retryAfterMs(key: string, now: number): number {
    const recent = this.recent(key, now);
    if (recent.length < this.limits.allowed) return 0;
    return Math.max(1, (recent[recent.length - this.limits.allowed] ?? now) + this.limits.windowMs - now);
  }

  /** Checks and takes a place in one synchronous step: nothing can come between them in this process. */
  attempt(keys: readonly string[], now: number): AttemptResult {
    let wait = 0;
    let busy = false;
    for (const key of keys) {
      const failures = this.recent(key, now).length;
      if (failures >= this.limits.allowed) wait = Math.max(wait, this.retryAfterMs(key, now));
      else if (failures + (this.pending.get(key) ?? 0) >= this.limits.allowed) busy = true;
    }
    if (wait > 0) return { counted: false, retryAfterMs: wait, busy: false };
    if (busy) return { counted: false, retryAfterMs: BUSY_RETRY_MS, busy: true };
    for (const key of keys) this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
    return { counted: true, id: String(now) };
  }

  settle(keys: readonly string[], _id: string, failed: boolean, now: number): void {
    for (const key of keys) {
      const left = (this.pending.get(key) ?? 1) - 1;
      if (left > 0) this.pending.set(key, left);
      else this.pending.delete(key);
      if (failed) this.add(key, now);
    }
  }

  add(key: string, now: number): void {
    const recent = this.recent(key, now);
    recent.push(now);
    this.failures.delete(key);
    this.failures.set(key, recent.slice(-this.limits.allowed));
    this.forgetExpired(now);
    for (const oldest of this.failures.keys()) {
      if (this.failures.size <= this.limits.maxKeys) break;
      this.failures.delete(oldest);
    }
  }

  clear(key: string): void {
    this.failures.delete(key);
  }

  /** Keys held now, for tests and diagnostics. */
  get size(): number {
    return this.failures.size;
  }

  private recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => t > now - this.limits.windowMs);
  }

  /** Keys whose last failure left the window; the oldest come first, so stop at the first live one. */
  private forgetExpired(now: number): void {
    for (const [key, times] of this.failures) {
      if ((times[times.length - 1] ?? 0) > now - this.limits.windowMs) break;
      this.failures.delete(key);
    }
  }
}
