/**
 * Code units of text tokenized at a time when a prompt may not fit. llama.cpp's
 * tokenizer is quadratic in the length of what it is given where text falls back
 * to bytes (characters outside a SentencePiece vocabulary: CJK, emoji): 900 KB of
 * CJK held the event loop 65 s in one call, 240 KB 1.9 s; a slice of this size
 * takes about a millisecond whatever it holds.
 */
const SLICE = 4096;

/**
 * Tokens a cut between two slices may add that the whole text would not have:
 * the token the whole text has across the cut is written as the pieces on either
 * side (a few tokens, at worst one per byte of a long token).
 */
const CUT_SLACK = 32;

/**
 * Texts shorter than this (in UTF-8 bytes, together) are left to be tokenized whole: that takes about 10 ms at
 * worst, and gives the exact count a refusal names.
 */
export const WHOLE_BELOW = 16 * 1024;

/**
 * A lower bound of the tokens `texts` take, once it reaches `limit`; undefined
 * when they may take fewer (the caller then tokenizes them whole, as usual).
 * The texts are tokenized slice by slice, stopping as soon as the count shows
 * they cannot fit: a megabyte that could never fit a context costs the few
 * slices that prove it, not a tokenization of the whole. Texts of fewer UTF-8
 * bytes than `limit` are not looked at (no token spans less than a byte, so
 * they cannot reach it), nor any shorter than `wholeBelow`.
 */
export function tokensAtLeast(
  tokenize: (text: string) => number,
  texts: readonly string[],
  limit: number,
  wholeBelow = WHOLE_BELOW,
): number | undefined {
  let bytes = 0;
  for (const text of texts) bytes += Buffer.byteLength(text, "utf8");
  if (bytes < limit || bytes < wholeBelow) return undefined;
  let counted = 0;
  let cuts = 0;
  for (const text of texts) {
    for (let start = 0; start < text.length;) {
      let end = Math.min(text.length, start + SLICE);
      // Never between the two halves of a surrogate pair: each half alone would tokenize as U+FFFD.
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end--;
      counted += tokenize(text.slice(start, end));
      if (end < text.length) cuts++;
      start = end;
      const bound = counted - cuts * CUT_SLACK;
      if (bound >= limit) return bound;
    }
  }
  return undefined;
}

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
