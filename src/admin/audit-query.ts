import type { FastifyRequest } from "fastify";
import { errors, shortened } from "../errors.js";
import { AUDIT_ACTIONS, type AuditContext, type AuditLog, type AuditPage, type AuditQuery, type AuditRecord } from "../store/audit-log.js";

export const DEFAULT_AUDIT_PAGE = 100;
export const MAX_AUDIT_PAGE = 1000;
/** Longer than any account id, action or actor ("member:" and the longest e-mail). */
const MAX_FILTER_LENGTH = 330;

/** Who acts through an HTTP request: its client address and request id come along. */
export const requestContext = (request: FastifyRequest, actor: string): AuditContext => ({ actor, source: request.ip, requestId: request.id });

function text(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") throw errors.invalidParameter(name, "give it once, as text.");
  if (value.length > MAX_FILTER_LENGTH) throw errors.invalidParameter(name, `must be at most ${MAX_FILTER_LENGTH} characters.`);
  return value;
}

/** An ISO 8601 date, or date and time with an optional fraction and zone: 2026-11-26, 2026-11-26T01:30:00.5+02:00. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:[Zz]|[+-](\d{2}):?(\d{2}))?)?$/;

/** Whether each field is in range: Date.parse rolls 2026-02-30 over to March 2 and 24:00 to the next day instead of refusing them. */
function inRange(m: RegExpExecArray): boolean {
  const [year, month, day, hour = 0, minute = 0, second = 0, zoneHour = 0, zoneMinute = 0] = m
    .slice(1)
    .map((f) => (f === undefined ? undefined : Number(f)));
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  return (
    month! >= 1 &&
    month! <= 12 &&
    day! >= 1 &&
    day! <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    zoneHour <= 23 &&
    zoneMinute <= 59
  );
}

function time(query: Record<string, unknown>, name: string): string | undefined {
  const value = text(query, name);
  if (value === undefined) return undefined;
  const m = ISO_TIME.exec(value);
  const ms = m === null || !inRange(m) ? NaN : Date.parse(value.replace(" ", "T"));
  if (Number.isNaN(ms)) throw errors.invalidParameter(name, "must be a real date or time such as 2026-11-26 or 2026-11-26T01:30:00Z.");
  return new Date(ms).toISOString();
}

function positive(query: Record<string, unknown>, name: string, max: number): number | undefined {
  const value = text(query, name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max)
    throw errors.invalidParameter(name, `must be a whole number from 1 to ${max}.`);
  return n;
}

/** Who acts in the audit log: the operator's session or admin token, the CLI, someone not signed in, and members (by e-mail). */
const AUDIT_ACTORS = ["operator", "cli", "anonymous", "member"];

/** The filters of GET …/audit: account, action, actor, since, until, limit and cursor; 400 for any malformed one. */
export function parseAuditQuery(raw: unknown): AuditQuery {
  const query = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const action = text(query, "action");
  if (action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(action)) {
    throw errors.invalidParameter("action", `must be one of ${AUDIT_ACTIONS.join(", ")}.`);
  }
  const actor = text(query, "actor");
  if (actor !== undefined && !AUDIT_ACTORS.includes(actor) && !actor.startsWith("member:")) {
    throw errors.invalidParameter("actor", `must be one of ${AUDIT_ACTORS.join(", ")} (any member) or member:<email>.`);
  }
  return {
    accountId: text(query, "account"),
    action,
    actor,
    since: time(query, "since"),
    until: time(query, "until"),
    cursor: positive(query, "cursor", Number.MAX_SAFE_INTEGER),
    limit: positive(query, "limit", MAX_AUDIT_PAGE) ?? DEFAULT_AUDIT_PAGE,
  };
}

export const auditRecordJson = (r: AuditRecord) => ({
  id: r.id,
  at: r.at,
  actor: r.actor,
  action: r.action,
  account_id: r.accountId,
  target: r.target,
  detail: r.detail ?? null,
  source: r.source,
  request_id: r.requestId,
  count: r.count,
});

/** A record as a member sees it: where the operator (or a CLI on the server) acted from is not theirs to see. */
export const memberAuditRecordJson = (r: AuditRecord) => ({
  ...auditRecordJson(r),
  source: r.actor === "operator" || r.actor === "cli" ? null : r.source,
});

export const auditPageJson = (page: AuditPage, view: (r: AuditRecord) => object = auditRecordJson) => ({
  object: "list",
  data: page.records.map(view),
  next_cursor: page.nextCursor,
});

/** The record a path names as JSON, if the caller may see it; a malformed, missing or hidden id is the same 404. */
export async function auditRecordById(
  audit: AuditLog,
  id: string,
  visible: (record: AuditRecord) => boolean = () => true,
  view: (r: AuditRecord) => object = auditRecordJson,
) {
  const record = /^\d{1,15}$/.test(id) ? await audit.get(Number(id)) : undefined;
  if (record === undefined || !visible(record)) throw errors.notFoundResource(`no audit record '${shortened(id)}'`);
  return view(record);
}
