/**
 * What an item fails with when it waited behind a call that found the store
 * out of reach: it was never sent, so it cannot have been written (unlike an
 * item of the call itself, whose statement may have committed unanswered).
 * The stores' outage checks see through it to the call's own error.
 */
export class NotSentError extends Error {
  constructor(override readonly cause: unknown) {
    super(`not sent: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "NotSentError";
  }
}

/** Items in one statement at most: a longer queue goes out in several. */
const MAX_BATCH = 500;

interface Waiting<I, O> {
  item: I;
  resolve: (result: O | Promise<O>) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for one kind of call to a shared store: while a call is in
 * flight the items that arrive wait, and go out together in the next one as
 * soon as it returns. Under load many requests share one statement and one
 * commit (PostgreSQL) or one read (Redis) instead of a network round trip
 * each, and a synchronous store (SQLite) commits each event-loop turn's items
 * in one transaction; an idle writer sends the first item at the end of its event-loop turn,
 * so a lone request waits for nothing. Each caller's promise settles with its
 * own result, and a failed call fails every item it carried.
 */
export class GroupWriter<I, O> {
  private waiting: Array<Waiting<I, O>> = [];
  private inFlight = false;
  private scheduled = false;

  constructor(
    /**
     * Writes the items in one statement and returns one result per item, in
     * order. A result may be a promise: that item is then settled by it, after
     * the writer has moved on (work one item still needs, which must neither
     * hold up the next statement nor fail the items already written).
     */
    private readonly write: (items: I[]) => Promise<Array<O | Promise<O>>>,
    /**
     * Whether a failed call means the store is out of reach (a connection lost,
     * an answer that never came): the items that arrived while it was in
     * flight then fail at once (NotSentError), instead of going out in the
     * next call, which would wait as long again, so a request waits for one
     * call's limit at most.
     */
    private readonly outage: (error: unknown) => boolean = () => false,
  ) {}

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.waiting.length === 0) return;
    this.scheduled = true;
    // After the I/O callbacks of this turn, so every item that arrives in it joins.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const batch = this.waiting.splice(0, MAX_BATCH);
    this.inFlight = true;
    void this.run(batch).finally(() => {
      this.inFlight = false;
      this.schedule();
    });
  }

  private async run(batch: Array<Waiting<I, O>>): Promise<void> {
    try {
      const results = await this.write(batch.map((w) => w.item));
      if (results.length !== batch.length) throw new Error(`a group write returned ${results.length} results for ${batch.length} items`);
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (error) {
      for (const w of batch) w.reject(error);
      if (this.outage(error)) for (const w of this.waiting.splice(0)) w.reject(new NotSentError(error));
    }
  }
}
