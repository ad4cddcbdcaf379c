/** One generation under way, counted until it ends. */
export interface PacedGeneration {
  /** Called once, when the generation ends however it ends. */
  end(): void;
  /**
   * Waits for `waiting` (a client that has not taken the text sent, another's turn on the context) uncounted: a
   * plain generation that is not generating holds no reader back.
   */
  idle<T>(waiting: Promise<T>): Promise<T>;
}

/**
 * Keeps generations that read the whole next-token distribution (log-probabilities) from slowing every other
 * generation of the process to their pace. node-llama-cpp hands each such distribution to JavaScript as an array
 * and a Map of the whole vocabulary: milliseconds of the event loop per token (measured: 12 ms a token against
 * 0.8 ms on the tests' 32,000-token model), in which no other sequence's token is taken. So while a generation
 * without them runs, a reading one waits after each read as long as that read took: the readers get at most about
 * half of the time and the others keep at least half their speed. Alone, or among readers only, nobody waits.
 * One per llama.cpp runtime: its engines share the event loop.
 */
export class DistributionPacer {
  /** Plain generations generating now: the ones a reader yields to. */
  private plain = 0;
  private waits = 0;

  /** Counts a generation until its `end()`; `readsDistributions` when it reads the whole distribution per token. */
  begin(readsDistributions: boolean): PacedGeneration {
    // A reader is not counted: readers beside readers only do not wait for each other.
    let counted = !readsDistributions;
    if (counted) this.plain++;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      this.plain--;
    };
    let ended = false;
    return {
      end: () => {
        ended = true;
        uncount();
      },
      idle: async (waiting) => {
        const wasCounted = counted;
        uncount();
        try {
          return await waiting;
        } finally {
          if (wasCounted && !ended) {
            counted = true;
            this.plain++;
          }
        }
      },
    };
  }

  /** After a read that took `readMs`: resolves at once when no plain generation runs, else after as long again. */
  afterRead(readMs: number, signal?: AbortSignal): Promise<void> | undefined {
    if (this.plain === 0 || !(readMs > 0) || signal?.aborted === true) return undefined;
    this.waits++;
    return new Promise((resolve) => {
      const timer = setTimeout(done, readMs);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** How many times a reader waited for others (the tests count them). */
  get waited(): number {
    return this.waits;
  }
}
