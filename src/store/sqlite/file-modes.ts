import { chmodSync, closeSync, existsSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { makeDirectorySync } from "../../make-directory.js";

const OWNER_ONLY_DIR = 0o700;
const OWNER_ONLY_FILE = 0o600;
const STICKY = 0o1000;
/** SQLite's companions of a database file; it creates them with the database file's mode. */
const SIDECARS = ["-wal", "-shm", "-journal"];

/**
 * The database holds password and key hashes and CSRF tokens: its directory is
 * made 0700 and the file 0600 before SQLite opens it, whatever the umask (which
 * only ever removes bits from what open(2) asks for, so the mode is set
 * explicitly afterwards). An existing directory is tightened too, unless it is
 * another user's or a shared sticky directory such as /tmp, which is not ours
 * to close.
 */
export function prepareDatabaseFile(path: string): void {
  const dir = dirname(path);
  makeDirectorySync(dir, OWNER_ONLY_DIR);
  const stat = statSync(dir);
  const ours = process.getuid === undefined || stat.uid === process.getuid();
  if (ours && (stat.mode & STICKY) === 0 && (stat.mode & 0o777) !== OWNER_ONLY_DIR) chmodSync(dir, OWNER_ONLY_DIR);
  try {
    closeSync(openSync(path, "a", OWNER_ONLY_FILE));
  } catch (error) {
    throw new Error(`cannot open the database file ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  chmodSync(path, OWNER_ONLY_FILE);
  restrictSidecars(path);
}

/** The -wal/-shm files of an existing database may predate this rule; SQLite reuses them as they are. */
export function restrictSidecars(path: string): void {
  for (const suffix of SIDECARS) {
    const file = `${path}${suffix}`;
    if (existsSync(file) && (statSync(file).mode & 0o777) !== OWNER_ONLY_FILE) chmodSync(file, OWNER_ONLY_FILE);
  }
}
