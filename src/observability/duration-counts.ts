/** Upper bounds in seconds of the duration histograms: from a fast answer's few milliseconds to a long stream's minutes. */
export const DURATION_BOUNDS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * Durations counted per bucket where they happen (an engine's exchange), read by the metrics at scrape time: a
 * count costs a short scan and an addition, with no labels to look up. Not cumulative; the last slot counts
 * those over the top bound.
 */
export type DurationCounts = number[];

export const noDurations = (): DurationCounts => new Array<number>(DURATION_BOUNDS.length + 1).fill(0);

export function countDuration(counts: DurationCounts, seconds: number): void {
  let i = 0;
  while (i < DURATION_BOUNDS.length && seconds > DURATION_BOUNDS[i]!) i++;
  counts[i]!++;
}

/** Adds `more` into `into`, bucket by bucket. */
export function addDurations(into: DurationCounts, more: DurationCounts): void {
  for (let i = 0; i < into.length; i++) into[i]! += more[i] ?? 0;
}
