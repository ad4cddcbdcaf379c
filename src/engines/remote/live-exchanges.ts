/** An exchange under way, as the answer deadline's sweep sees it. */
export interface Expiring {
  /** When the answer was first asked for (performance.now()): the deadline runs from there, a retry included. */
  readonly since: number;
  /** Its place in LiveExchanges while it is there, -1 otherwise. */
  slot: number;
  expire(error: Error): void;
}

/**
 * The exchanges under way, in an array: one joins at its end, and one that ends has the last moved into its place.
 * Every request joins and leaves, so neither may cost much: a Set of them cost ~15% of a gateway request's
 * main-thread time, measured (bench/README.md), where the array's few stores cost nothing measurable.
 */
export class LiveExchanges {
  private readonly all: Expiring[] = [];

  add(exchange: Expiring): void {
    exchange.slot = this.all.length;
    this.all.push(exchange);
  }

  delete(exchange: Expiring): void {
    const i = exchange.slot;
    if (i < 0 || this.all[i] !== exchange) return;
    const last = this.all.pop()!;
    if (last !== exchange) {
      this.all[i] = last;
      last.slot = i;
    }
    exchange.slot = -1;
  }

  /** Takes out and returns the exchanges that began before `before` (performance.now()). */
  takeStartedBefore(before: number): Expiring[] {
    const due = this.all.filter((exchange) => exchange.since < before);
    for (const exchange of due) this.delete(exchange);
    return due;
  }

  get size(): number {
    return this.all.length;
  }
}
