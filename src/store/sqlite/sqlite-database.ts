import Database from "better-sqlite3";
import { prepareDatabaseFile, restrictSidecars } from "./file-modes.js";
import { MIGRATIONS } from "./migrations.js";

/**
 * Runs the migrations a database has not seen yet, one per write transaction.
 * The version is read inside the transaction, so two processes opening a new
 * file at once (a server and a CLI command) cannot both apply the same step.
 */
export function migrate(db: Database.Database): void {
  const step = db.transaction((): boolean => {
    const version = db.pragma("user_version", { simple: true }) as number;
    const migration = MIGRATIONS[version];
    if (migration === undefined) return false;
    if (typeof migration === "string") db.exec(migration);
    else migration(db);
    db.pragma(`user_version = ${version + 1}`);
    return true;
  });
  while (step.immediate()) {
    // next version
  }
}

/**
 * Opens (creating if needed) one SQLite file in WAL mode, migrated to the latest
 * schema. WAL: readers never block the writer, and a committed transaction
 * survives the process being killed at any moment (synchronous=NORMAL only
 * risks the last transactions on power loss, not on a process crash).
 */
export function openDatabase(path: string): Database.Database {
  if (path !== ":memory:") prepareDatabaseFile(path);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  if (path !== ":memory:") restrictSidecars(path);
  migrate(db);
  return db;
}

/**
 * The file stayed locked by another writer (a CLI command, a backup, an
 * operator's sqlite3 shell) past the busy timeout: a condition that passes,
 * which a client may retry, unlike a full disk or a corrupt file.
 */
export function isSqliteBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}
