import type { Stores } from "../store.js";
import { SqliteAuditLog } from "./audit-log.js";
import { SqliteAccountStore } from "./sqlite-accounts.js";
import { openDatabase, openNoWaitConnection } from "./sqlite-database.js";
import { SqliteLedger, type SqliteLedgerOptions } from "./sqlite-ledger.js";
import { SqlitePeopleStore } from "./sqlite-people.js";

/**
 * The three stores and the audit log in one SQLite file: better-sqlite3 is
 * synchronous, so each method is atomic within this process by construction and
 * inside a transaction on disk, and the ledger's group commit is the only writer
 * that defers. The ledger has a connection of its own (see openNoWaitConnection).
 */
export function openSqliteStores(path: string, options: SqliteLedgerOptions = {}): Stores {
  const db = openDatabase(path);
  // Every request's writes (ledger commits, keys' last-used times, failures' audit counts) go through a connection that never
  // waits for the file's lock in this thread. An in-memory database has one connection and no other writer.
  const hot = path === ":memory:" ? { db, stopWaiting: () => undefined } : openNoWaitConnection(path);
  const ledger = new SqliteLedger(hot.db, options);
  hot.stopWaiting();
  const accounts = new SqliteAccountStore(db, hot.db);
  // A server's own changes (dashboard, admin API) do not wait for the lock in the event loop either: every write
  // the stores make is tried again off it (whileBusy). A command-line process waits in place, as before.
  if (options.serving === true && path !== ":memory:") db.pragma("busy_timeout = 0");
  return {
    accounts,
    ledger,
    people: new SqlitePeopleStore(db, () => accounts.forgetKeys()),
    audit: new SqliteAuditLog(db, hot.db),
    close: async () => {
      await ledger.close();
      if (hot.db.open) hot.db.close();
      if (db.open) db.close();
    },
  };
}
