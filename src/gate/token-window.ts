/** One admission's tokens, stamped with its admission time. */
interface TokenEntry {
  at: number;
  tokens: number;
  /** False once the entry has left the window: settling it then changes nothing. */
  inWindow: boolean;
}

/** What the token window says about one key at one moment. */
export interface TokenWindowState {
  allowed: boolean;
  limit: number;
  /** Tokens still free in the current window (after this request's reservation when allowed). */
  remaining: number;
  /** Milliseconds until a refused reservation would fit (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the window holds no tokens again. */
  resetMs: number;
}

/** A reservation in the window: settled to the real count when the request ends. */
export interface TokenHold {
  settle(tokens: number): void;
}

/**
 * The tokens one key used over a sliding window, counted at each request's
 * admission time. A request reserves its worst case up front, so concurrent
 * requests can never together pass the cap, and gives back the unused part
 * when it settles.
 */
export class TokenWindow {
  private readonly entries: TokenEntry[] = [];
  private head = 0;
  private used = 0;

  private expire(now: number, windowMs: number): void {
    while (this.head < this.entries.length && this.entries[this.head]!.at <= now - windowMs) {
      const gone = this.entries[this.head++]!;
      gone.inWindow = false;
      this.used -= gone.tokens;
    }
    // Compact now and then, so the array does not grow with every request ever made.
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }

  check(now: number, windowMs: number, limit: number, reserve: number): TokenWindowState {
    this.expire(now, windowMs);
    const newest = this.head < this.entries.length ? this.entries[this.entries.length - 1]!.at : now - windowMs;
    const resetMs = Math.max(0, newest + windowMs - now);
    if (this.used + reserve <= limit) {
      return { allowed: true, limit, remaining: limit - this.used, retryAfterMs: 0, resetMs };
    }
    // The reservation fits once enough of the oldest entries have left the window.
    let freed = 0;
    let retryAfterMs = resetMs;
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      freed += entry.tokens;
      if (this.used - freed + reserve <= limit) {
        retryAfterMs = entry.at + windowMs - now;
        break;
      }
    }
    return { allowed: false, limit, remaining: Math.max(0, limit - this.used), retryAfterMs, resetMs };
  }

  record(now: number, tokens: number): TokenHold {
    const entry: TokenEntry = { at: now, tokens, inWindow: true };
    this.entries.push(entry);
    this.used += tokens;
    return {
      settle: (real: number): void => {
        if (!entry.inWindow) return;
        this.used += real - entry.tokens;
        entry.tokens = real;
      },
    };
  }
}
