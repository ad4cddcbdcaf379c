import type { Stores } from "./store.js";
import { sqliteFile } from "./sqlite/database-file.js";
import { openSqliteStores } from "./sqlite/sqlite-store.js";

/** Where the stores live: today the SQLite file in the data dir. */
export interface StoreConfig {
  dataDir: string;
}

export interface StoreOptions {
  /**
   * Open the stores for a server, which admits requests: it settles what dead
   * servers left unfinished. CLI commands and tests of data leave it off.
   */
  serving?: boolean;
}

/** The one way the server, the CLI and the tests open the account, ledger and people stores. */
export async function createStore(config: StoreConfig, options: StoreOptions = {}): Promise<Stores> {
  return openSqliteStores(sqliteFile(config.dataDir), options);
}
