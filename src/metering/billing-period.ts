import { errors } from "../errors.js";
/** The billing period: the calendar month in UTC. */
export interface BillingPeriod {
  /** "YYYY-MM", the ledger's key for the month. */
  key: string;
  start: Date;
  /** The first instant of the next month. */
  next: Date;
}

/** The first instant of a UTC month; setUTCFullYear, because Date.UTC maps years 0–99 to 1900–1999. */
function monthStart(year: number, monthIndex: number): Date {
  const d = new Date(0);
  d.setUTCFullYear(year, monthIndex, 1);
  return d;
}

function periodOf(year: number, monthIndex: number): BillingPeriod {
  const start = monthStart(year, monthIndex);
  return { key: start.toISOString().slice(0, 7), start, next: monthStart(year, monthIndex + 1) };
}

export function billingPeriod(at: Date = new Date()): BillingPeriod {
  return periodOf(at.getUTCFullYear(), at.getUTCMonth());
}

/** The last period `periodKeyAt` computed: the next request is almost always in it. */
let lastPeriod: BillingPeriod | undefined;

/**
 * `billingPeriod(at).key`, computing a period (three Dates and a string) only
 * when `at` leaves the month of the last call: the gate asks for every request.
 */
export function periodKeyAt(at: Date): string {
  const t = at.getTime();
  if (lastPeriod === undefined || t < lastPeriod.start.getTime() || t >= lastPeriod.next.getTime()) lastPeriod = billingPeriod(at);
  return lastPeriod.key;
}

const PERIOD = /^(\d{4})-(0[1-9]|1[0-2])$/;
const FIRST_PERIOD_YEAR = 1970;

/** A "YYYY-MM" period from a request, 1970-01 to 9999-12; undefined for anything else. */
export function parsePeriod(text: string): BillingPeriod | undefined {
  const match = PERIOD.exec(text);
  if (match === null) return undefined;
  const year = Number(match[1]);
  if (year < FIRST_PERIOD_YEAR) return undefined;
  return periodOf(year, Number(match[2]) - 1);
}

/** ISO 8601 to the second, as the reference writes times: "2026-03-01T00:00:00Z". */
export const isoSeconds = (d: Date): string => `${d.toISOString().slice(0, 19)}Z`;

/** The `period` query parameter of the usage pages: this month when absent, 400 when not a month we can report. */
export function requestedPeriod(given: string | undefined): BillingPeriod {
  const period = given === undefined ? billingPeriod() : parsePeriod(given);
  if (period === undefined) throw errors.invalidParameter("period", `must be a month, YYYY-MM, from ${FIRST_PERIOD_YEAR}-01 to 9999-12.`);
  return period;
}

/** The second `isoTime` last formatted, and its text up to the seconds. */
let cachedSecond = Number.NaN;
let cachedPrefix = "";

/**
 * `at.toISOString()`, formatting the date part once per second: the ledger
 * stamps every admission and completion, and toISOString was ~1% of a gateway
 * request's CPU each time. Years outside 0000–9999 (a longer form) are not cached.
 */
export function isoTime(at: Date): string {
  const ms = at.getTime();
  const second = Math.floor(ms / 1000);
  if (second !== cachedSecond) {
    const iso = at.toISOString();
    if (iso.length !== 24) return iso;
    cachedSecond = second;
    cachedPrefix = iso.slice(0, 20);
  }
  const fraction = ms - second * 1000;
  return `${cachedPrefix}${fraction < 10 ? "00" : fraction < 100 ? "0" : ""}${fraction}Z`;
}
