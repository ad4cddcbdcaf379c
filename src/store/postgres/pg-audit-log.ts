import type pg from "pg";
import type { AuditAction, AuditContext, AuditEntry, AuditLog, AuditPage, AuditQuery, AuditRecord } from "../audit-log.js";
import { toAuditRecord, type AuditRow } from "../rows.js";
import { holdsNul } from "./pg-text.js";

const COLUMNS = "id, at, actor, action, account_id, target, detail, source, request_id, count";

/** The audit log in PostgreSQL; a trigger keeps it append-only (migration 2). */
export class PgAuditLog implements AuditLog {
  constructor(private readonly pool: pg.Pool) {}

  async record(context: AuditContext, entry: AuditEntry): Promise<void> {
    await this.pool.query(
      `INSERT INTO audit_log (at, actor, action, account_id, target, detail, source, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        new Date().toISOString(),
        context.actor,
        entry.action,
        entry.accountId,
        entry.target,
        entry.detail === undefined ? null : JSON.stringify(entry.detail),
        context.source,
        context.requestId,
      ],
    );
  }

  async count(context: AuditContext, action: AuditAction, at = new Date()): Promise<void> {
    const iso = at.toISOString();
    // Bucketed per source: an aggregate without an address would have nothing to be unique on.
    await this.pool.query(
      `INSERT INTO audit_log AS a (at, actor, action, source, request_id, bucket) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (action, source, bucket) WHERE bucket IS NOT NULL DO UPDATE SET count = a.count + 1`,
      [iso, context.actor, action, context.source ?? "unknown", context.requestId, iso.slice(0, 16)],
    );
  }

  async query(query: AuditQuery): Promise<AuditPage> {
    if (holdsNul(query.accountId, query.action, query.actor, query.since, query.until)) return { records: [], nextCursor: null };
    const where: string[] = [];
    const params: Array<string | number> = [];
    const param = (value: string | number): string => {
      params.push(value);
      return `$${params.length}`;
    };
    if (query.accountId !== undefined) where.push(`account_id = ${param(query.accountId)}`);
    if (query.action !== undefined) where.push(`action = ${param(query.action)}`);
    if (query.actor === "member") where.push("actor LIKE 'member:%'");
    else if (query.actor !== undefined) where.push(`actor = ${param(query.actor)}`);
    if (query.since !== undefined) where.push(`at >= ${param(query.since)}`);
    if (query.until !== undefined) where.push(`at < ${param(query.until)}`);
    if (query.cursor !== undefined) where.push(`id < ${param(query.cursor)}`);
    const limit = param(query.limit + 1);
    const sql = `SELECT ${COLUMNS} FROM audit_log ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`} ORDER BY id DESC LIMIT ${limit}`;
    const { rows } = await this.pool.query<AuditRow>(sql, params);
    const more = rows.length > query.limit;
    const records = rows.slice(0, query.limit).map(toAuditRecord);
    return { records, nextCursor: more ? (records.at(-1)?.id ?? null) : null };
  }

  async get(id: number): Promise<AuditRecord | undefined> {
    const { rows } = await this.pool.query<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE id = $1`, [id]);
    return rows[0] && toAuditRecord(rows[0]);
  }

  async prune(before: Date): Promise<number> {
    const r = await this.pool.query("DELETE FROM audit_log WHERE at < $1", [before.toISOString()]);
    return r.rowCount ?? 0;
  }
}
