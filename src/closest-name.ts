/** Suggestions for a mistyped name: the variable, specialist or model meant. */

/**
 * The candidate within `maxEdits` edits of `name` (the nearest, the first of equals), if any. Case is not an edit:
 * "CLASSIFY" is a slip of "classify" however many letters it shouts.
 */
export function closest(name: string, candidates: Iterable<string>, maxEdits = 3): string | undefined {
  let best: string | undefined;
  let bestDistance = maxEdits + 1;
  let folded: string | undefined;
  for (const candidate of candidates) {
    // The lengths' difference is a lower bound of the distance: a name of a megabyte costs nothing to rule out.
    if (Math.abs(name.length - candidate.length) >= bestDistance) continue;
    folded ??= name.toLowerCase();
    const d = editDistance(folded, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * The edits a slip of `name` may make: a third of its length, one to three. Past that the nearest candidate is a
 * guess, not the name meant ("gold" is two edits from "solo").
 */
export const slipEdits = (name: string): number => Math.min(3, Math.max(1, Math.floor(name.length / 3)));

/** Levenshtein distance: insertions, deletions and substitutions of one character each. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
