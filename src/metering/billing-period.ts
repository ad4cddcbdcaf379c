/** The billing period: the calendar month in UTC. */
export interface BillingPeriod {
  /** "YYYY-MM", the ledger's key for the month. */
  key: string;
  start: Date;
  /** The first instant of the next month. */
  next: Date;
}

export function billingPeriod(at: Date = new Date()): BillingPeriod {
  const start = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
  const next = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1));
  return { key: start.toISOString().slice(0, 7), start, next };
}

/** ISO 8601 to the second, as the reference writes times: "2026-03-01T00:00:00Z". */
export const isoSeconds = (d: Date): string => `${d.toISOString().slice(0, 19)}Z`;
