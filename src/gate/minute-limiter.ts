/** What the limiter says about one key at one moment. */
export interface WindowState {
  allowed: boolean;
  limit: number;
  /** Requests still allowed in the current window. */
  remaining: number;
  /** Milliseconds until a refused request would be let in (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the window is entirely clear again. */
  resetMs: number;
}

/**
 * A ring of the last `limit` admission times: exact where fixed windows and
 * token buckets are approximate. A request is let in when the oldest of the
 * last `limit` admissions is at least a window old, so no window of that length
 * ever holds more than `limit` requests, and a client that waits exactly the
 * reported time is let in.
 */
export class AdmissionLog {
  private readonly times: Float64Array;
  private start = 0;
  private count = 0;

  constructor(readonly limit: number) {
    this.times = new Float64Array(limit);
  }

  private expire(now: number, windowMs: number): void {
    while (this.count > 0 && this.times[this.start]! <= now - windowMs) {
      this.start = (this.start + 1) % this.limit;
      this.count--;
    }
  }

  check(now: number, windowMs: number): WindowState {
    this.expire(now, windowMs);
    const newest = this.count === 0 ? now - windowMs : this.times[(this.start + this.count - 1) % this.limit]!;
    if (this.count < this.limit) {
      return { allowed: true, limit: this.limit, remaining: this.limit - this.count, retryAfterMs: 0, resetMs: Math.max(0, newest + windowMs - now) };
    }
    const oldest = this.times[this.start]!;
    return { allowed: false, limit: this.limit, remaining: 0, retryAfterMs: oldest + windowMs - now, resetMs: newest + windowMs - now };
  }

  record(now: number): void {
    this.times[(this.start + this.count) % this.limit] = now;
    this.count++;
  }

  /**
   * Takes back one admission recorded at `at` (a request cancelled before it
   * ran), wherever it is in the window: later admissions move up one place.
   * Times are in order, so the search stops at the first older one.
   */
  unrecord(at: number): void {
    for (let i = this.count - 1; i >= 0; i--) {
      const t = this.times[(this.start + i) % this.limit]!;
      if (t < at) return;
      if (t !== at) continue;
      for (let j = i; j < this.count - 1; j++) {
        this.times[(this.start + j) % this.limit] = this.times[(this.start + j + 1) % this.limit]!;
      }
      this.count--;
      return;
    }
  }
}
