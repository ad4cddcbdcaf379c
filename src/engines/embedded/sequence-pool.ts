import { errors } from "../../errors.js";

/** Picks which of the free items (oldest release first) a caller takes; returns its index. */
type PickFree<T> = (free: readonly T[]) => number;

interface Waiter<T> {
  resolve: (item: T) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
  /** Counted against the queue's bound: a new request, not another choice of a running one. */
  bounded: boolean;
  /** Set by `take`: until then the caller is still preparing (building its grammar) and an item waits for it. */
  ready: boolean;
  pick: PickFree<T> | undefined;
}

/** A caller's place in the queue, held from its arrival while it prepares. */
export interface Place<T> {
  /** Waits, once the caller is ready, for the item its place brings; `pick` chooses among several free ones. */
  take(pick?: PickFree<T>): Promise<T>;
  /** Gives the place up unused (the request was refused while it prepared). */
  cancel(): void;
}

/**
 * A fixed set of reusable items (a context's sequences) handed out first come,
 * first served. Callers wait in a bounded FIFO queue; when it is full the pool
 * answers 503 overloaded at once instead of letting latency grow without bound.
 * A caller takes its place on arrival (`reserve`) and its item once ready
 * (`take`): a request still building its grammar counts against the bound and
 * keeps its turn, and the items free when it arrived are kept for it rather
 * than taken by those that came after. A caller that finds several items free
 * may pick one (the sequence whose cache best fits its prompt); picking never
 * lets anyone overtake the queue. The one exception: a new request may take an
 * item before the further choices (`n`) of requests already running, every
 * other time, so that one request's many choices cannot hold all the others back.
 */
export class SequencePool<T> {
  private readonly free: T[];
  /** In arrival order. The first `free.length` are all still preparing: each has an item kept for it. */
  private readonly waiters: Waiter<T>[] = [];
  /** Set by drain: a request that reaches the pool afterwards is refused too. */
  private refusal: { reason: unknown } | undefined;
  /** Whether the last item a further choice could have taken went to a new request instead (see overtaker). */
  private choicePassed = false;

  constructor(
    items: readonly T[],
    private readonly maxQueue: number,
  ) {
    this.free = [...items];
  }

  /** Callers waiting for an item: those preparing with an item kept for them are not. */
  get queued(): number {
    return Math.max(0, this.waiters.length - this.free.length);
  }
  get available(): number {
    return this.free.length;
  }

  /** `bounded` false: a caller already admitted (another choice of a running request) waits without counting against the bound. */
  acquire(signal: AbortSignal, pick?: PickFree<T>, bounded = true): Promise<T> {
    try {
      return this.reserve(signal, bounded).take(pick);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * A place in the queue from now on, in arrival order; throws (503 overloaded) when the queue is full, or the
   * drain's refusal, or the signal's reason when it is aborted already.
   */
  reserve(signal: AbortSignal, bounded = true): Place<T> {
    if (signal.aborted) throw signal.reason;
    if (bounded && this.refusal !== undefined) throw this.refusal.reason;
    // Behind everyone: it waits unless an item is free beyond those kept for the callers ahead of it.
    const waits = this.waiters.length >= this.free.length;
    if (bounded && waits && this.waitingRequests() >= this.maxQueue) throw errors.overloaded(1);
    let resolve!: (item: T) => void;
    let reject!: (reason: unknown) => void;
    const item = new Promise<T>((yes, no) => {
      resolve = yes;
      reject = no;
    });
    // Refused before it is taken (an abort, the drain): the caller sees it when it takes, not as an unhandled rejection.
    item.catch(() => undefined);
    const waiter: Waiter<T> = {
      resolve,
      reject,
      signal,
      bounded,
      ready: false,
      pick: undefined,
      onAbort: () => {
        this.leave(waiter);
        reject(signal.reason);
      },
    };
    signal.addEventListener("abort", waiter.onAbort, { once: true });
    this.waiters.push(waiter);
    return {
      take: (pick) => {
        waiter.ready = true;
        waiter.pick = pick;
        this.dispatch();
        return item;
      },
      cancel: () => this.leave(waiter),
    };
  }

  /** Bounded waiters past those with an item kept for them: the requests waiting for an item. */
  private waitingRequests(): number {
    return this.waiters.reduce((count, w, i) => count + (w.bounded && i >= this.free.length ? 1 : 0), 0);
  }

  private leave(waiter: Waiter<T>): void {
    waiter.signal.removeEventListener("abort", waiter.onAbort);
    const i = this.waiters.indexOf(waiter);
    if (i === -1) return;
    this.waiters.splice(i, 1);
    // The item kept for it may now be another's.
    this.dispatch();
  }

  /**
   * Hands free items to ready waiters in arrival order, keeping one for each waiter ahead of them still preparing;
   * a new request may go before the further choices of running requests, every other time (see overtaker).
   */
  private dispatch(): void {
    let kept = 0;
    for (let i = 0; i < this.waiters.length && this.free.length > kept;) {
      if (!this.waiters[i]!.ready) {
        kept++;
        i++;
        continue;
      }
      const overtaker = this.overtaker(i, kept);
      if (!this.waiters[i]!.bounded) this.choicePassed = overtaker !== undefined;
      const [waiter] = this.waiters.splice(overtaker ?? i, 1);
      waiter!.signal.removeEventListener("abort", waiter!.onAbort);
      waiter!.resolve(this.takeFree(waiter!.pick));
    }
  }

  /**
   * The first new request ready behind waiter `i`, when `i` is a further choice of a running request and the item
   * need not be kept for anyone between them; undefined when the last item a choice could have had went to a new
   * request already. A request with many choices (`n`) queued them all on arrival: a request that came after waited
   * until all but the last had run (a probe: 30 s for 20 tokens behind one `n: 8` request). Every other time, not
   * always: new requests arriving without end would otherwise hold the running request's choices back for good.
   */
  private overtaker(i: number, kept: number): number | undefined {
    if (this.waiters[i]!.bounded || this.choicePassed) return undefined;
    let preparing = 0;
    for (let j = i + 1; j < this.waiters.length; j++) {
      const waiter = this.waiters[j]!;
      if (!waiter.ready) preparing++;
      else if (waiter.bounded) return this.free.length > kept + preparing ? j : undefined;
    }
    return undefined;
  }

  private takeFree(pick: PickFree<T> | undefined): T {
    // Without a preference, the most recently released item (its memory is warm).
    let chosen = this.free.length - 1;
    try {
      if (pick !== undefined) chosen = pick(this.free);
    } catch {
      // Only the preference is lost: thrown here, the waiter would be out of the queue with its promise never settled.
    }
    const index = Number.isInteger(chosen) && chosen >= 0 && chosen < this.free.length ? chosen : this.free.length - 1;
    return this.free.splice(index, 1)[0]!;
  }

  release(item: T): void {
    this.free.push(item);
    this.dispatch();
  }

  /**
   * Rejects the new requests still waiting or preparing (shutdown), and any that come later. Another choice of a
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
    this.dispatch();
  }
}
