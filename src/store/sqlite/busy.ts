import { setTimeout as sleep } from "node:timers/promises";

/* What a connection does while another process holds the SQLite file's lock (apart from sqlite-database.ts: the audit log imports this, and the database's migrations import the audit log). */

/** How long a write waits for another writer (a CLI command, a backup, an operator's shell) before it fails. */
export const BUSY_TIMEOUT_MS = 5_000;

/** Pauses between tries of a write the file's lock refused, in ms: short at first, as SQLite's own busy handler's. */
const BUSY_RETRY_MS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

/**
 * Runs a write on a no-wait connection, trying it again while the file is
 * locked, for as long as a waiting connection would (BUSY_TIMEOUT_MS), without
 * holding up the event loop between tries.
 */
export async function whileBusy<T>(write: () => T): Promise<T> {
  const started = performance.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return write();
    } catch (error) {
      const waited = performance.now() - started;
      if (!isSqliteBusy(error) || waited >= BUSY_TIMEOUT_MS) throw error;
      await sleep(Math.min(BUSY_RETRY_MS[attempt] ?? BUSY_RETRY_MS.at(-1)!, BUSY_TIMEOUT_MS - waited));
    }
  }
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
