import type Database from "better-sqlite3";
import type pg from "pg";
import { inTransaction } from "./pg-pool.js";

/**
 * The tables a SQLite deployment moves to PostgreSQL, parents before children.
 * Nodes are left behind: their unfinished rows name writers PostgreSQL never
 * saw, which serving nodes treat as dead and settle, as a SQLite restart would.
 */
const TABLES = [
  "accounts",
  "api_keys",
  "members",
  "invitations",
  "sessions",
  "usage_counters",
  "usage_events",
  "usage_daily",
  "usage_refusals",
  "audit_log",
] as const;
export type CopiedTable = (typeof TABLES)[number];

/** The column that names a row of each table in the copy's report (never a token hash). */
const ROW_NAMES: Record<CopiedTable, string> = {
  accounts: "id",
  api_keys: "id",
  members: "id",
  invitations: "member_id",
  sessions: "member_id",
  usage_counters: "account_id",
  usage_events: "id",
  usage_daily: "account_id",
  usage_refusals: "account_id",
  audit_log: "id",
};

/** What stands in for a NUL in copied text: PostgreSQL text cannot hold U+0000. */
export const NUL_REPLACEMENT = "\uFFFD";

/** A value that held a NUL (written by an older version, which took any name), copied with U+FFFD instead. */
export interface ReplacedNul {
  table: CopiedTable;
  column: string;
  /** The row's id (or its account's or member's id, for tables without one), as copied. */
  row: string;
}

export interface CopyReport {
  copied: Record<CopiedTable, number>;
  replaced: ReplacedNul[];
}

/** Tables whose ids PostgreSQL hands out from a sequence: it continues after the copied ones. */
const SERIAL_TABLES = ["usage_events", "audit_log"];
const BATCH_ROWS = 500;

/** The target already holds data; copying into it would mix two deployments. */
export class TargetNotEmptyError extends Error {}

/**
 * Copies every row of a migrated SQLite database into a migrated, empty
 * PostgreSQL database, in one transaction: all of it or nothing. The schemas
 * share table and column names and text times, so rows copy column for
 * column; key hashes copy as they are, so every existing key still works.
 *
 * A NUL in text (a name an older version took as it came) cannot be stored in
 * PostgreSQL: it is copied as U+FFFD and reported, rather than failing the
 * whole move over a character nobody can see.
 */
export async function copyFromSqlite(source: Database.Database, pool: pg.Pool): Promise<CopyReport> {
  return inTransaction(pool, async (client) => {
    await client.query("SET LOCAL statement_timeout = 0"); // a large ledger copies in batches that may take a while
    // Locks out a second copy (or a node creating accounts) until this one commits.
    await client.query("LOCK TABLE accounts, usage_events, audit_log IN EXCLUSIVE MODE");
    const existing = await client.query<{ n: number }>(
      "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM usage_events) + (SELECT COUNT(*) FROM audit_log) AS n",
    );
    if ((existing.rows[0]?.n ?? 0) > 0) {
      throw new TargetNotEmptyError(
        "the PostgreSQL database at ALVEARE_DATABASE_URL already holds accounts, usage or audit records; copy into an empty database",
      );
    }
    const copied = {} as Record<CopiedTable, number>;
    const replaced: ReplacedNul[] = [];
    for (const table of TABLES) copied[table] = await copyTable(source, client, table, replaced);
    for (const table of SERIAL_TABLES) {
      await client.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), COALESCE((SELECT MAX(id) FROM ${table}), 0) + 1, false)`);
    }
    return { copied, replaced };
  });
}

async function copyTable(source: Database.Database, client: pg.PoolClient, table: CopiedTable, replaced: ReplacedNul[]): Promise<number> {
  const targetColumns = new Set(
    (
      await client.query<{ column_name: string }>(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        [table],
      )
    ).rows.map((r) => r.column_name),
  );
  // Columns both sides know; a column only PostgreSQL has keeps its default.
  const columns = (source.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name).filter((c) => targetColumns.has(c));
  let batch: unknown[][] = [];
  let count = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const params: unknown[] = [];
    const rows = batch.map((row) => `(${row.map((value) => `$${params.push(value)}`).join(", ")})`);
    await client.query(`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${rows.join(", ")}`, params);
    count += batch.length;
    batch = [];
  };
  const select = source.prepare(`SELECT ${columns.join(", ")} FROM ${table}`).raw(true);
  const nameAt = columns.indexOf(ROW_NAMES[table]);
  for (const row of select.iterate() as Iterable<unknown[]>) {
    const cleaned = row.map((value) => (typeof value === "string" && value.includes("\u0000") ? value.replaceAll("\u0000", NUL_REPLACEMENT) : value));
    cleaned.forEach((value, i) => {
      if (value !== row[i]) replaced.push({ table, column: columns[i]!, row: String(cleaned[nameAt] ?? "-") });
    });
    batch.push(cleaned);
    if (batch.length >= BATCH_ROWS) await flush();
  }
  await flush();
  return count;
}
