import { errors } from "../../errors.js";

interface Waiter<T> {
  resolve: (item: T) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/**
 * A fixed set of reusable items (a context's sequences) handed out first come,
 * first served. Callers wait in a bounded FIFO queue; when it is full the pool
 * answers 503 overloaded at once instead of letting latency grow without bound.
 */
export class SequencePool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];

  constructor(items: readonly T[], private readonly maxQueue: number) {
    this.free = [...items];
  }

  get queued(): number { return this.waiters.length; }
  get available(): number { return this.free.length; }

  acquire(signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const item = this.waiters.length === 0 ? this.free.pop() : undefined;
    if (item !== undefined) return Promise.resolve(item);
    if (this.waiters.length >= this.maxQueue) return Promise.reject(errors.overloaded(1));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve, reject, signal,
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

  release(item: T): void {
    const next = this.waiters.shift();
    if (next === undefined) {
      this.free.push(item);
      return;
    }
    next.signal.removeEventListener("abort", next.onAbort);
    next.resolve(item);
  }

  /** Rejects everyone still waiting (shutdown). */
  drain(reason: unknown): void {
    for (const w of this.waiters.splice(0)) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(reason);
    }
  }
}
