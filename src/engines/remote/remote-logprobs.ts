import type { TokenAlternative, TokenLogprob } from "../types.js";

/** An upstream's `choices[].logprobs` in OpenAI's shape; anything else in it is ignored. */
export interface UpstreamLogprobs {
  content?: UpstreamTokenLogprob[] | null;
}
interface UpstreamAlternative {
  token?: string;
  logprob?: number;
  bytes?: number[] | null;
}
interface UpstreamTokenLogprob extends UpstreamAlternative {
  top_logprobs?: UpstreamAlternative[] | null;
}

const alternative = (a: UpstreamAlternative): TokenAlternative => {
  const token = typeof a.token === "string" ? a.token : "";
  return {
    token,
    logprob: typeof a.logprob === "number" ? a.logprob : -9999,
    // An upstream's null (a token with no bytes) passes through; missing bytes are the token's own.
    bytes: Array.isArray(a.bytes) || a.bytes === null ? a.bytes : [...Buffer.from(token, "utf8")],
  };
};

/** The entries of a list that are objects; anything else (or no list) gives none. */
const objectsIn = <T extends object>(list: unknown): T[] =>
  Array.isArray(list) ? list.filter((e): e is T => typeof e === "object" && e !== null) : [];

/** The upstream's token log-probabilities, passed through as the engine layer holds them. */
export function upstreamLogprobs(logprobs: UpstreamLogprobs | null | undefined): TokenLogprob[] {
  return objectsIn<UpstreamTokenLogprob>(logprobs?.content).map((entry) => ({
    ...alternative(entry),
    top: objectsIn<UpstreamAlternative>(entry.top_logprobs).map(alternative),
  }));
}
