import type { CompletionRecord } from "../store.js";
import { isDatabaseConnectionFailure } from "./connection-failure.js";

/** How many completions wait for the database at most; past that a failed one is reported instead of kept. */
export const RETRY_QUEUE_LIMIT = 10_000;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;

/**
 * Errors that say the database was away or busy, not that the statement is
 * wrong: a connection failure (the same classifier that answers clients 503),
 * insufficient resources (53), operator intervention (57) and a rolled-back
 * transaction (40). Running the completion again later is safe: it closes its
 * row at most once.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  if (isDatabaseConnectionFailure(error)) return true;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^(40|53|57)[0-9A-Z]{3}$/.test(code);
}

/**
 * Completions whose write failed because the database was briefly
 * unreachable: the client got its answer, so the ledger must say so. They are
 * written again, oldest first, with backoff until the database answers;
 * otherwise the row would stay open and be settled as not delivered later.
 */
export class CompletionRetryQueue<T = CompletionRecord> {
  private readonly waiting: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private delayMs = FIRST_DELAY_MS;
  private draining: Promise<void> | undefined;

  constructor(
    private readonly write: (r: T) => Promise<void>,
    private readonly limit = RETRY_QUEUE_LIMIT,
  ) {}

  get size(): number {
    return this.waiting.length;
  }

  /** Keeps a completion to write later; false when the queue is full. */
  add(r: T): boolean {
    if (this.waiting.length >= this.limit) return false;
    this.waiting.push(r);
    this.schedule();
    return true;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.draining !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, this.delayMs);
    this.timer.unref();
  }

  /** Writes what waits, oldest first, until one fails (then backs off) or none is left. */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      try {
        while (this.waiting.length > 0) {
          await this.write(this.waiting[0]!);
          this.waiting.shift();
          this.delayMs = FIRST_DELAY_MS;
        }
      } catch {
        this.delayMs = Math.min(MAX_DELAY_MS, this.delayMs * 2);
      } finally {
        this.draining = undefined;
      }
      if (this.waiting.length > 0) this.schedule();
    })();
    return this.draining;
  }

  /** On shutdown: one last try; returns how many completions could still not be written. */
  async flush(): Promise<number> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.draining;
    await this.drain();
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.waiting.length;
  }
}
