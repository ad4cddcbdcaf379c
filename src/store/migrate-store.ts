import { existsSync, statSync } from "node:fs";
import Database from "better-sqlite3";
import type { StoreConfig } from "./create-store.js";
import { copyFromSqlite, type CopyReport } from "./postgres/copy-from-sqlite.js";
import { migratePostgres, PG_MIGRATIONS } from "./postgres/migrations.js";
import { DatabaseUnavailableError, openPool } from "./postgres/pg-pool.js";
import { sqliteFile } from "./sqlite/database-file.js";
import { MIGRATIONS } from "./sqlite/migrations.js";
import { openDatabase } from "./sqlite/sqlite-database.js";

export interface MigrationReport {
  backend: "sqlite" | "postgres";
  /** The schema version this release knows and the database is now at (or beyond). */
  version: number;
  /** Versions applied by this run; empty when the database was up to date. */
  applied: number[];
}

/** Brings the configured database to this release's schema, as every start does, and says what it did. */
export async function migrateStore(config: StoreConfig): Promise<MigrationReport> {
  if (config.databaseUrl !== undefined) {
    return withPool(config.databaseUrl, async (pool) => ({
      backend: "postgres",
      version: PG_MIGRATIONS.length,
      applied: await migratePostgres(pool),
    }));
  }
  const path = sqliteFile(config.dataDir);
  const fresh = !existsSync(path);
  const before = fresh ? 0 : versionOf(path);
  // Opening migrates (and creates the file with the data dir's permissions).
  openDatabase(path).close();
  const applied = Array.from({ length: MIGRATIONS.length - before }, (_, i) => before + i + 1);
  return { backend: "sqlite", version: MIGRATIONS.length, applied };
}

function versionOf(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("user_version", { simple: true }) as number;
  } finally {
    db.close();
  }
}

/** A SQLite source as `--from sqlite:PATH` names it: the database file, or the data dir that holds it. */
export function sqliteSource(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? sqliteFile(path) : path;
}

/**
 * Moves a SQLite deployment into the configured PostgreSQL database: both are
 * migrated to this release's schema first, then every row is copied in one
 * transaction. The target must be empty.
 */
export async function copySqliteToPostgres(sourcePath: string, databaseUrl: string): Promise<CopyReport> {
  const source = openDatabase(sourcePath);
  try {
    return await withPool(databaseUrl, async (pool) => {
      await migratePostgres(pool);
      return copyFromSqlite(source, pool);
    });
  } finally {
    source.close();
  }
}

async function withPool<T>(url: string, body: (pool: ReturnType<typeof openPool>) => Promise<T>): Promise<T> {
  // Migrations and copies lift the server's limit on their statements: the client sets none either.
  const pool = openPool(url, { unbounded: true });
  try {
    await pool.query("SELECT 1").catch((error: unknown) => {
      throw new DatabaseUnavailableError(url, error);
    });
    return await body(pool);
  } finally {
    await pool.end().catch(() => undefined);
  }
}
