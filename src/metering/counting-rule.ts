/**
 * Which admitted requests count against an account's usage: one rule for the
 * quota's give-back, the usage counters, the daily chart, `by_specialist` and
 * tokens.
 *
 * | outcome                                   | requests | tokens   | by_specialist |
 * |-------------------------------------------|----------|----------|---------------|
 * | 2xx served                                | counts   | counts   | counts        |
 * | 499 client gone after admission           | counts   | produced | counts        |
 * | 4xx found after admission                 | given back | none   | no            |
 * | 5xx or upstream failure, shutdown cut     | given back | none   | no            |
 * | never completed (process died), settled   | given back | none   | no            |
 *
 * A client that leaves still used the engine; everything else the client did
 * not receive through no fault of its own, or could not have, is given back.
 */
export const CLIENT_CLOSED = 499;

/** Ledger status of a request whose process died before it completed, settled at the next start. */
export const NOT_DELIVERED = 0;

export const countsAgainstQuota = (status: number): boolean => (status >= 200 && status < 300) || status === CLIENT_CLOSED;

/** The log line for requests a dead node left unfinished once they are settled (never delivered, so given back). */
export const settledDeadNodeRequests = (n: number): string =>
  `gave back ${n} request${n === 1 ? "" : "s"} a stopped node admitted and never finished (killed or cut off): ` +
  "settled as not delivered (status 0) and returned to their accounts' monthly quotas, with no tokens billed";
