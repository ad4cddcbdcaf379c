/**
 * Finds stop strings in text that arrives piece by piece. Text that might be the
 * start of a stop string is held back until it is clearly not, so a streaming
 * client never sees a stop string, not even half of one.
 */
export class StopScanner {
  private pending = "";
  private readonly longest: number;
  stopped = false;

  constructor(private readonly stops: readonly string[]) {
    this.longest = stops.reduce((n, s) => Math.max(n, s.length), 0);
  }

  /** Adds text; returns the part that is safe to emit now. */
  push(text: string): string {
    if (this.stopped) return "";
    if (this.longest === 0) return text;
    this.pending += text;
    let cut = -1;
    for (const stop of this.stops) {
      if (stop.length === 0) continue;
      const at = this.pending.indexOf(stop);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return out;
    }
    const keep = this.heldSuffixLength();
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return out;
  }

  /** The end of the output: whatever was held back is text after all. */
  flush(): string {
    const out = this.stopped ? "" : this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest suffix of pending that is a proper prefix of some stop string. */
  private heldSuffixLength(): number {
    const max = Math.min(this.longest - 1, this.pending.length);
    for (let n = max; n > 0; n--) {
      const tail = this.pending.slice(this.pending.length - n);
      if (this.stops.some((s) => s.startsWith(tail))) return n;
    }
    return 0;
  }
}
