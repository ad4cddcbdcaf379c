import type Database from "better-sqlite3";
import type { AuditAction, AuditContext, AuditEntry, AuditLog, AuditPage, AuditQuery, AuditRecord } from "../audit-log.js";
import { toAuditRecord, type AuditRow } from "../rows.js";
import { whileBusy } from "./busy.js";

/**
 * Schema of the audit log (migration 5). Aggregates (failed sign-ins of unknown
 * e-mails, failed admin tokens) carry their UTC minute in `bucket`, unique per
 * action and source address, so a flood raises a count instead of adding rows.
 * The trigger keeps records append-only: the only change a row may see is an
 * aggregate's count going up; deletion is left to pruning by age.
 */
export const AUDIT_LOG_MIGRATION = `
  CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    account_id TEXT,
    target TEXT,
    detail TEXT,
    source TEXT,
    request_id TEXT,
    count INTEGER NOT NULL DEFAULT 1,
    bucket TEXT
  );
  CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log(at);
  CREATE INDEX IF NOT EXISTS audit_log_by_account ON audit_log(account_id, id);
  CREATE UNIQUE INDEX IF NOT EXISTS audit_log_buckets ON audit_log(action, source, bucket) WHERE bucket IS NOT NULL;
  CREATE TRIGGER IF NOT EXISTS audit_log_append_only BEFORE UPDATE ON audit_log
  WHEN OLD.bucket IS NULL OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.actor IS NOT OLD.actor
    OR NEW.action IS NOT OLD.action OR NEW.account_id IS NOT OLD.account_id OR NEW.target IS NOT OLD.target
    OR NEW.detail IS NOT OLD.detail OR NEW.source IS NOT OLD.source OR NEW.request_id IS NOT OLD.request_id
    OR NEW.bucket IS NOT OLD.bucket OR NEW.count < OLD.count
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
`;

/**
 * The audit log in the store's SQLite database, on the store's connection; the aggregates of failures
 * (`count`) on `requestPath`, the no-wait connection of requests' writes (openNoWaitConnection): anyone
 * can send a wrong admin token, and its count must not stop the server while another process holds the lock.
 */
export class SqliteAuditLog implements AuditLog {
  private readonly insert;
  private readonly bump;
  private readonly byId;
  private readonly deleteBefore;

  constructor(
    private readonly db: Database.Database,
    requestPath: Database.Database = db,
  ) {
    this.insert = db.prepare(
      `INSERT INTO audit_log (at, actor, action, account_id, target, detail, source, request_id)
       VALUES (@at, @actor, @action, @accountId, @target, @detail, @source, @requestId)`,
    );
    this.bump = requestPath.prepare(
      `INSERT INTO audit_log (at, actor, action, source, request_id, bucket)
       VALUES (@at, @actor, @action, @source, @requestId, @bucket)
       ON CONFLICT (action, source, bucket) WHERE bucket IS NOT NULL DO UPDATE SET count = count + 1`,
    );
    this.byId = db.prepare<[number], AuditRow>("SELECT * FROM audit_log WHERE id = ?");
    this.deleteBefore = db.prepare<[string]>("DELETE FROM audit_log WHERE at < ?");
  }

  async record(context: AuditContext, entry: AuditEntry): Promise<void> {
    const row = {
      at: new Date().toISOString(),
      actor: context.actor,
      action: entry.action,
      accountId: entry.accountId,
      target: entry.target,
      detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
      source: context.source,
      requestId: context.requestId,
    };
    await whileBusy(() => this.insert.run(row));
  }

  count(context: AuditContext, action: AuditAction, at = new Date()): Promise<void> {
    const iso = at.toISOString();
    // Bucketed per source: an aggregate without an address would have nothing to be unique on.
    const row = {
      at: iso,
      actor: context.actor,
      action,
      source: context.source ?? "unknown",
      requestId: context.requestId,
      bucket: iso.slice(0, 16),
    };
    // An upsert: tried again whole while the file is locked, it counts once.
    return whileBusy(() => {
      this.bump.run(row);
    });
  }

  async query(query: AuditQuery): Promise<AuditPage> {
    const where: string[] = [];
    const params: Record<string, string | number> = { limit: query.limit + 1 };
    // Each filter given adds its condition on the named parameter @name.
    const filter = (condition: string, name: string, value: string | number | undefined): void => {
      if (value === undefined) return;
      where.push(condition);
      params[name] = value;
    };
    filter("account_id = @accountId", "accountId", query.accountId);
    filter("action = @action", "action", query.action);
    if (query.actor === "member") where.push("actor LIKE 'member:%'");
    else filter("actor = @actor", "actor", query.actor);
    filter("at >= @since", "since", query.since);
    filter("at < @until", "until", query.until);
    filter("id < @cursor", "cursor", query.cursor);
    const sql = `SELECT * FROM audit_log ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`} ORDER BY id DESC LIMIT @limit`;
    const rows = await whileBusy(() => this.db.prepare<Record<string, string | number>, AuditRow>(sql).all(params));
    const more = rows.length > query.limit;
    const records = rows.slice(0, query.limit).map(toAuditRecord);
    return { records, nextCursor: more ? (records.at(-1)?.id ?? null) : null };
  }

  async get(id: number): Promise<AuditRecord | undefined> {
    const row = await whileBusy(() => this.byId.get(id));
    return row === undefined ? undefined : toAuditRecord(row);
  }

  prune(before: Date): Promise<number> {
    return whileBusy(() => this.deleteBefore.run(before.toISOString()).changes);
  }
}
