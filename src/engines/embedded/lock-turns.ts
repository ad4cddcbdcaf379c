/**
 * node-llama-cpp 3.21.1 decodes under its context's lock and keeps the lock
 * while any sequence has a decode queued. With two sequences generating, one
 * always has, so an operation that needs the lock (erasing a sequence's cache,
 * loading or saving its state) waits until every generation ends: a one-token
 * request waited seconds behind two long ones. Such operations announce
 * themselves here, and generating choices pause before their next token while
 * one waits: the decode queue empties, the lock passes to the operation, and
 * generation resumes once it is done.
 */
export class LockTurns {
  private waiting = 0;
  private paused: Promise<void> | undefined;
  private resume: (() => void) | undefined;

  /** Runs an operation that needs the context's lock, pausing generation until it is done. */
  async take<T>(operation: () => Promise<T>): Promise<T> {
    if (this.waiting++ === 0) this.paused = new Promise((resolve) => (this.resume = resolve));
    try {
      return await operation();
    } finally {
      if (--this.waiting === 0) {
        this.resume?.();
        this.paused = undefined;
        this.resume = undefined;
      }
    }
  }

  /** What a generating choice awaits before asking for its next token; undefined when no operation waits. */
  get pause(): Promise<void> | undefined {
    return this.paused;
  }
}
