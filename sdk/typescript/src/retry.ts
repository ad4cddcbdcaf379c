/**
 * The retry policy, kept pure so it can be tested with an injected clock:
 * which failures are retried, and how long to wait before the next attempt.
 */

export const INITIAL_DELAY_MS = 500;
export const MAX_BACKOFF_MS = 8_000;
/** A server-requested wait longer than this is not waited out (nor retried sooner): the error is surfaced at once. */
export const MAX_SERVER_DELAY_MS = 60_000;

export interface RetryDecision {
  retry: boolean;
  delayMs: number;
}

/** Whether a status (with the server's hints) is worth another attempt. */
export function shouldRetry(status: number, headers: Headers, code: string | undefined): boolean {
  const hint = headers.get("x-should-retry");
  if (hint === "false") return false;
  if (hint === "true") return true;
  if (status === 429) return code !== "monthly_quota_exceeded";
  return status === 408 || status === 409 || status >= 500;
}

/** The server's requested wait in ms: retry-after-ms first, then Retry-After as seconds or an HTTP date. */
export function serverDelayMs(headers: Headers | undefined, now: number): number | undefined {
  if (headers === undefined) return undefined;
  const ms = Number.parseFloat(headers.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const retryAfter = headers.get("retry-after");
  if (retryAfter === null) return undefined;
  const seconds = Number.parseFloat(retryAfter);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * How long to wait before the next attempt, or undefined for not at all. A server-given wait is
 * honoured exactly when it is at most MAX_SERVER_DELAY_MS; a longer one means undefined: the error
 * is surfaced at once rather than waited out or retried early. Without one, exponential backoff
 * with jitter: 0.5 s, 1 s, 2 s … capped at 8 s, each shortened by up to 25% at random so clients
 * that failed together do not retry together.
 */
export function retryDelayMs(attempt: number, headers: Headers | undefined, now: number, random: () => number = Math.random): number | undefined {
  const server = serverDelayMs(headers, now);
  if (server !== undefined) return server <= MAX_SERVER_DELAY_MS ? server : undefined;
  const backoff = Math.min(INITIAL_DELAY_MS * 2 ** attempt, MAX_BACKOFF_MS);
  return backoff * (1 - 0.25 * random());
}
