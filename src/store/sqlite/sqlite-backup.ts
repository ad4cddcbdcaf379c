import { closeSync, openSync, rmSync, statSync } from "node:fs";
import Database from "better-sqlite3";

/** A backup that could not be made, in words for the operator. */
export class BackupError extends Error {}

/**
 * Copies the SQLite database, while a server may be writing to it, into a new file: one consistent snapshot
 * (VACUUM INTO runs in a single read transaction, which WAL lets the server's writes go on beside), checked, and
 * readable by its owner only, as the database itself (it holds password and key hashes).
 */
export function backUpSqlite(source: string, target: string): { bytes: number; schemaVersion: number } {
  const db = new Database(source, { readonly: true, fileMustExist: true });
  let created = false;
  try {
    // Made empty first, with its mode, and never over an existing file: a backup must not replace another one.
    closeSync(openSync(target, "wx", 0o600));
    created = true;
    db.prepare("VACUUM INTO ?").run(target);
  } catch (error) {
    if (created) rmSync(target, { force: true });
    if ((error as { code?: unknown }).code === "EEXIST") throw new BackupError(`${target} already exists: name a new file for the backup`);
    if ((error as { code?: unknown }).code === "ENOENT") throw new BackupError(`no directory for ${target}: create it first`);
    if ((error as { code?: unknown }).code === "SQLITE_NOTADB") throw new BackupError(`${source} is not a SQLite database`);
    throw error;
  } finally {
    db.close();
  }
  const copy = new Database(target, { readonly: true });
  try {
    const check = copy.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new BackupError(`the backup ${target} failed its check (${String(check)}); it is kept for inspection`);
    return { bytes: statSync(target).size, schemaVersion: copy.pragma("user_version", { simple: true }) as number };
  } finally {
    copy.close();
  }
}
