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
 */
export async function copyFromSqlite(source: Database.Database, pool: pg.Pool): Promise<Record<CopiedTable, number>> {
  return inTransaction(pool, async (client) => {
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
    for (const table of TABLES) copied[table] = await copyTable(source, client, table);
    for (const table of SERIAL_TABLES) {
      await client.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), COALESCE((SELECT MAX(id) FROM ${table}), 0) + 1, false)`);
    }
    return copied;
  });
}

async function copyTable(source: Database.Database, client: pg.PoolClient, table: CopiedTable): Promise<number> {
  const targetColumns = new Set(
    (await client.query<{ column_name: string }>("SELECT column_name FROM information_schema.columns WHERE table_name = $1", [table])).rows.map(
      (r) => r.column_name,
    ),
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
  for (const row of select.iterate() as Iterable<unknown[]>) {
    batch.push(row);
    if (batch.length >= BATCH_ROWS) await flush();
  }
  await flush();
  return count;
}
