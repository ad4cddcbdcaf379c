import { DEFAULT_REDIS_PREFIX } from "../config/config.js";
import type { Stores } from "./store.js";
import { sqliteFile } from "./sqlite/database-file.js";
import { openSqliteStores } from "./sqlite/sqlite-store.js";
import { openPostgresStores } from "./postgres/pg-store.js";
import { describeDatabaseUrl } from "./postgres/pg-pool.js";

/** Where the stores live: the SQLite file in the data dir, or PostgreSQL when a database URL is set. */
export interface StoreConfig {
  dataDir: string;
  /** ALVEARE_DATABASE_URL: the shared database of several nodes. */
  databaseUrl?: string | undefined;
  /** The config file's plan table; serving nodes on PostgreSQL must all have the same one. */
  plans?: unknown;
  /** How long a serving node on PostgreSQL that stopped renewing its lease counts as alive. */
  nodeLeaseMs?: number | undefined;
  /** ALVEARE_REDIS_URL and ALVEARE_REDIS_PREFIX: every node and the CLI of one database must share the prefix. */
  redisUrl?: string | undefined;
  redisPrefix?: string | undefined;
}

export interface StoreOptions {
  /**
   * Open the stores for a server, which admits requests: it settles what dead
   * servers left unfinished. CLI commands and tests of data leave it off.
   */
  serving?: boolean;
  /** Where the stores report what a shutdown could not finish (the server's log). */
  warn?: ((message: string) => void) | undefined;
}

/** The one way the server, the CLI and the tests open the account, ledger and people stores. */
export async function createStore(config: StoreConfig, options: StoreOptions = {}): Promise<Stores> {
  if (config.databaseUrl !== undefined) {
    return openPostgresStores(config.databaseUrl, {
      serving: options.serving,
      plans: config.plans,
      leaseMs: config.nodeLeaseMs,
      redisPrefix: config.redisUrl === undefined ? undefined : (config.redisPrefix ?? DEFAULT_REDIS_PREFIX),
      warn: options.warn,
    });
  }
  return openSqliteStores(sqliteFile(config.dataDir), options);
}

/** Where the stores of a config live, in words for the operator: never the database password. */
export function storeLocation(config: StoreConfig): string {
  if (config.databaseUrl === undefined) return sqliteFile(config.dataDir);
  return `PostgreSQL at ${describeDatabaseUrl(config.databaseUrl)}`;
}
