import type { Stores } from "../store.js";
import { SqliteAuditLog } from "./audit-log.js";
import { SqliteAccountStore } from "./sqlite-accounts.js";
import { openDatabase } from "./sqlite-database.js";
import { SqliteLedger, type SqliteLedgerOptions } from "./sqlite-ledger.js";
import { SqlitePeopleStore } from "./sqlite-people.js";

/**
 * The three stores and the audit log in one SQLite file, sharing one connection: better-sqlite3 is
 * synchronous, so each method is atomic within this process by construction and
 * inside a transaction on disk, and the ledger's group commit is the only writer
 * that defers.
 */
export function openSqliteStores(path: string, options: SqliteLedgerOptions = {}): Stores {
  const db = openDatabase(path);
  const ledger = new SqliteLedger(db, options);
  const accounts = new SqliteAccountStore(db);
  return {
    accounts,
    ledger,
    people: new SqlitePeopleStore(db, () => accounts.forgetKeys()),
    audit: new SqliteAuditLog(db),
    close: async () => {
      await ledger.close();
      if (db.open) db.close();
    },
  };
}
