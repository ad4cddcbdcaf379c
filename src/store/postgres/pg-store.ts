import type { Stores } from "../store.js";
import { settledDeadNodeRequests } from "../../metering/counting-rule.js";
import { ReadOnlyDatabaseError } from "./connection-failure.js";
import { migratePostgres } from "./migrations.js";
import { PgAccountStore } from "./pg-accounts.js";
import { PgAuditLog } from "./pg-audit-log.js";
import { PgLedger } from "./pg-ledger.js";
import { anyNodeServing, checkRedisPrefix, NodeLease, recordedPlans } from "./pg-nodes.js";
import { PgPeopleStore } from "./pg-people.js";
import { DatabaseUnavailableError, inTransaction, openPool, openRequestPool } from "./pg-pool.js";

export interface PgStoreOptions {
  /** A server: it holds a node lease, checks the plan table and settles dead nodes' rows. */
  serving?: boolean | undefined;
  /** The plan table every serving node must share; checked when serving. */
  plans?: unknown;
  /** How long a node that stopped renewing counts as alive. */
  leaseMs?: number | undefined;
  /** The Redis key prefix of the shared mode: checked against the one the running nodes use (a server records it). */
  redisPrefix?: string | undefined;
  /** Where a shutdown reports completions it could not write. */
  warn?: ((message: string) => void) | undefined;
}

export const DEFAULT_LEASE_MS = 15_000;

/**
 * The three stores and the audit log in one PostgreSQL database, on one pool.
 * Opening migrates the schema (race-free across nodes) and, for a server,
 * joins the nodes: plan table checked, lease taken, dead nodes' rows settled;
 * with each renewal the node also closes its own rows no request holds.
 */
export async function openPostgresStores(url: string, options: PgStoreOptions = {}): Promise<Stores> {
  const pool = openPool(url);
  let lease: NodeLease | undefined;
  try {
    await pool.query("SELECT 1").catch((error: unknown) => {
      throw new DatabaseUnavailableError(url, error);
    });
    // On a pool of its own without the client's limit: a migration, or waiting for another node's, may take long.
    const migrations = openPool(url, { max: 1, unbounded: true });
    await migratePostgres(migrations).finally(() => migrations.end().catch(() => undefined));
    if (options.serving === true) {
      lease = new NodeLease(pool, options.leaseMs ?? DEFAULT_LEASE_MS, (n) => options.warn?.(settledDeadNodeRequests(n)));
      await lease.join(options.plans, options.redisPrefix);
      await lease.settleDead();
    } else if (options.redisPrefix !== undefined) {
      const prefix = options.redisPrefix;
      await inTransaction(pool, (client) => checkRedisPrefix(client, prefix, false));
    }
  } catch (error) {
    await lease?.stop();
    await pool.end().catch(() => undefined);
    throw error;
  }
  const nodeId = lease?.id ?? null;
  // A server's requests get their own pool, whose statements the database cuts before the node stops waiting.
  const requests = options.serving === true ? openRequestPool(url) : pool;
  const ledger = new PgLedger(pool, () => nodeId, requests);
  lease?.start(() => ledger.closeForgotten());
  return {
    accounts: new PgAccountStore(pool, requests),
    ledger,
    people: new PgPeopleStore(pool),
    audit: new PgAuditLog(pool),
    recordedPlans: async () => {
      const plans = await recordedPlans(pool);
      return plans === undefined ? undefined : { plans, serving: await anyNodeServing(pool) };
    },
    writable: async () => {
      // On in a standby's transactions, and in a session opened with default_transaction_read_only.
      const { rows } = await pool.query<{ read_only: string }>("SELECT current_setting('transaction_read_only') AS read_only");
      if (rows[0]?.read_only !== "off") throw new ReadOnlyDatabaseError();
    },
    close: async () => {
      const unwritten = await ledger.retries.flush();
      if (unwritten > 0) {
        options.warn?.(
          `${unwritten} completed requests could not be written to the ledger (PostgreSQL unreachable); ` +
            "their rows stay open and are settled as not delivered once this node's lease runs out " +
            "(a success refused with 503 whose write had committed after all stays recorded as served)",
        );
      }
      await lease?.stop();
      if (requests !== pool) await requests.end();
      await pool.end();
    },
  };
}
