import Database from "better-sqlite3";
import { prepareDatabaseFile, restrictSidecars } from "./file-modes.js";
import { BUSY_TIMEOUT_MS } from "./busy.js";
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
  configureConnection(db);
  if (path !== ":memory:") restrictSidecars(path);
  migrate(db);
  return db;
}

/** The settings of every connection to the file. */
function configureConnection(db: Database.Database): void {
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
}

/**
 * A second connection to a file openDatabase opened, for writes that must not
 * wait in the calling thread for another writer's lock: SQLite's busy wait
 * sleeps in it, which for a server is every request's. Call `stopWaiting` once
 * what it does at open (which may wait) is done; its writes then fail at once
 * with SQLITE_BUSY, for the caller to drop (best effort) or try again off the
 * event loop (`whileBusy`).
 */
export function openNoWaitConnection(path: string): { db: Database.Database; stopWaiting: () => void } {
  const db = new Database(path, { fileMustExist: true });
  configureConnection(db);
  // Not a prepared statement: SQLite applies busy_timeout when the pragma is prepared.
  return { db, stopWaiting: () => db.pragma("busy_timeout = 0") };
}
