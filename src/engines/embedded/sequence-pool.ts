import { errors } from "../../errors.js";

interface Waiter<T> {
  resolve: (item: T) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
  /** Counted against the queue's bound: a new request, not another choice of a running one. */
  bounded: boolean;
}

/** Picks which of the free items (oldest release first) a caller takes; returns its index. */
type PickFree<T> = (free: readonly T[]) => number;

/**
 * A fixed set of reusable items (a context's sequences) handed out first come,
 * first served. Callers wait in a bounded FIFO queue; when it is full the pool
 * answers 503 overloaded at once instead of letting latency grow without bound.
 * A caller that finds several items free may pick one (the sequence whose cache
 * best fits its prompt); a waiter takes the item the next release frees, so
 * picking never lets anyone overtake the queue.
 */
export class SequencePool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];
  /** Set by drain: a request that reaches the pool afterwards (it was preparing, e.g. building its grammar) is refused too. */
  private refusal: { reason: unknown } | undefined;

  constructor(
    items: readonly T[],
    private readonly maxQueue: number,
  ) {
    this.free = [...items];
  }

  get queued(): number {
    return this.waiters.length;
  }
  get available(): number {
    return this.free.length;
  }

  /** `bounded` false: a caller already admitted (another choice of a running request) waits without counting against the bound. */
  acquire(signal: AbortSignal, pick?: PickFree<T>, bounded = true): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (bounded && this.refusal !== undefined) return Promise.reject(this.refusal.reason);
    const item = this.waiters.length === 0 ? this.takeFree(pick) : undefined;
    if (item !== undefined) return Promise.resolve(item);
    if (bounded && this.waitingRequests() >= this.maxQueue) return Promise.reject(errors.overloaded(1));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        bounded,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i !== -1) this.waiters.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Waiters counted against the bound: another choice of a running request waits in line too, but is no request waiting. */
  private waitingRequests(): number {
    return this.waiters.reduce((count, w) => count + (w.bounded ? 1 : 0), 0);
  }

  private takeFree(pick: PickFree<T> | undefined): T | undefined {
    if (this.free.length === 0) return undefined;
    // Without a preference, the most recently released item (its memory is warm).
    const chosen = pick === undefined ? this.free.length - 1 : pick(this.free);
    const index = Number.isInteger(chosen) && chosen >= 0 && chosen < this.free.length ? chosen : this.free.length - 1;
    return this.free.splice(index, 1)[0];
  }

  release(item: T): void {
    const next = this.waiters.shift();
    if (next === undefined) {
      this.free.push(item);
      return;
    }
    next.signal.removeEventListener("abort", next.onAbort);
    next.resolve(item);
  }

  /**
   * Rejects the new requests still waiting (shutdown), and any that come later. Another choice of a
   * running request keeps its place: its request may finish within the drain,
   * and the drain's deadline ends it through its signal like any running request.
   */
  drain(reason: unknown): void {
    this.refusal = { reason };
    const refused = this.waiters.filter((w) => w.bounded);
    this.waiters.splice(0, this.waiters.length, ...this.waiters.filter((w) => !w.bounded));
    for (const w of refused) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(reason);
    }
  }
}
