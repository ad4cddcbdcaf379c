import { randomBytes } from "node:crypto";
import { closeSync, existsSync, linkSync, openSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";

/** A backup that could not be made, in words for the operator. */
export class BackupError extends Error {}

const codeOf = (error: unknown): unknown => (error as { code?: unknown }).code;

/**
 * Copies the SQLite database, while a server may be writing to it, into a new file: one consistent snapshot
 * (VACUUM INTO runs in a single read transaction, which WAL lets the server's writes go on beside), checked, and
 * readable by its owner only, as the database itself (it holds password and key hashes). The copy is written
 * under a temporary name beside the target and takes the target's name only once checked, so a backup cut short
 * (a full disk, Ctrl-C) never leaves a file under the backup's name, and an existing file is never replaced.
 */
export function backUpSqlite(source: string, target: string): { bytes: number; schemaVersion: number } {
  // SQLite takes a file named as the database's own journal or WAL for a leftover of it, and deletes or replays it.
  if (["-journal", "-wal", "-shm"].some((suffix) => resolve(target) === resolve(`${source}${suffix}`))) {
    throw new BackupError(`${target} is named as the database's own journal or WAL, which SQLite deletes or replays: name the backup otherwise`);
  }
  // Said before copying a large database for nothing; taking the name below refuses one made meanwhile too.
  if (existsSync(target)) throw new BackupError(`${target} already exists: name a new file for the backup`);
  const partial = join(dirname(target), `.${basename(target)}.${suffix()}.partial`);
  // Best effort: a leftover that cannot be removed must not hide the backup's outcome.
  const cleanUp = (): void => {
    for (const leftover of [partial, `${partial}-journal`]) {
      try {
        rmSync(leftover, { force: true });
      } catch {
        // Named `.….partial`: recognisable for the operator to remove.
      }
    }
  };
  try {
    // Made empty first, with its mode: VACUUM INTO keeps the mode of a file that exists.
    closeSync(openSync(partial, "wx", 0o600));
    copyInto(source, partial);
    const schemaVersion = checked(partial, target);
    takeName(partial, target);
    return { bytes: statSync(target).size, schemaVersion };
  } catch (error) {
    if (error instanceof BackupError) throw error;
    if (codeOf(error) === "EEXIST") throw new BackupError(`${target} already exists: name a new file for the backup`);
    if (codeOf(error) === "ENOENT") throw new BackupError(`no directory for ${target}: create it first`);
    if (codeOf(error) === "ENOTDIR") throw new BackupError(`${dirname(target)} is not a directory: name a backup file in one`);
    if (codeOf(error) === "SQLITE_NOTADB") throw new BackupError(`${source} is not a SQLite database`);
    throw new BackupError(`could not back up to ${target}: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    cleanUp();
  }
}

const suffix = (): string => randomBytes(4).toString("hex");

/**
 * Gives the checked copy the backup's name, never over a file that exists (made meanwhile too): a hard link refuses
 * one; where links cannot be made (vfat and exFAT drives, most SMB shares), the name is claimed with an exclusive
 * create first and the copy renamed over that empty claim.
 */
function takeName(partial: string, target: string): void {
  try {
    linkSync(partial, target);
  } catch (error) {
    if (!["EPERM", "ENOTSUP", "ENOSYS", "EOPNOTSUPP"].includes(String(codeOf(error)))) throw error;
    closeSync(openSync(target, "wx", 0o600));
    renameSync(partial, target);
  }
}

function copyInto(source: string, partial: string): void {
  const db = new Database(source, { readonly: true, fileMustExist: true });
  try {
    db.prepare("VACUUM INTO ?").run(partial);
  } finally {
    db.close();
  }
}

/** The copy's schema version once it passes SQLite's check; a copy that fails it is kept beside the target, named so. */
function checked(partial: string, target: string): number {
  let result: unknown;
  let version = 0;
  try {
    const copy = new Database(partial, { readonly: true });
    try {
      result = copy.pragma("quick_check", { simple: true });
      version = copy.pragma("user_version", { simple: true }) as number;
    } finally {
      copy.close();
    }
  } catch (error) {
    // A copy too broken to be checked (SQLITE_CORRUPT) is kept as one that fails the check.
    result = error instanceof Error ? error.message : String(error);
  }
  if (result === "ok") return version;
  // A name of its own: an earlier failure's copy is not replaced.
  const corrupt = `${target}.${suffix()}.corrupt`;
  renameSync(partial, corrupt);
  throw new BackupError(`the copy failed SQLite's check (${String(result)}): kept as ${corrupt} for inspection, no backup made`);
}
