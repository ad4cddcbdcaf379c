import pg from "pg";
import { isDatabaseConnectionFailure } from "./connection-failure.js";

/** Every statement is cut after this long, so a stuck query fails a request instead of holding a connection. */
export const STATEMENT_TIMEOUT_MS = 5_000;
/**
 * What the node waits at most for any other statement, counted by itself: a
 * database that stopped answering (a silent partition, a frozen host) fails
 * the admin API, the dashboard, lease renewals and shutdown's last writes
 * instead of holding them for the outage. A second over the server's own
 * limit, so a live server's cut (and its error) comes first.
 */
const STATEMENT_CLIENT_TIMEOUT_MS = STATEMENT_TIMEOUT_MS + 1_000;
/** A connection that cannot be opened (host down, network cut) fails this fast. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * What a request waits at most for one of its own statements (its admission,
 * its completion): past it the request is refused 503, never held for the
 * length of an outage. Enforced by the client, so a database that stopped
 * answering (a silent partition, a powered-off host) counts too.
 */
const REQUEST_STATEMENT_TIMEOUT_MS = 2_000;
/**
 * The server's own limit for those statements, under the client's: a statement
 * the client stopped waiting for has been cancelled by then (unless it reached
 * the server late, in a partition), so a request answered 503 was not recorded
 * as served behind its back.
 */
const REQUEST_SERVER_TIMEOUT_MS = 1_500;
/** Open connections are probed by TCP keepalive, so one whose peer vanished is found dead instead of waiting on the kernel for minutes. */
const KEEPALIVE_DELAY_MS = 10_000;
const POOL_SIZE = 10;

/**
 * The database could not be reached or refused us (wrong host, password, database).
 * Its message is one line naming ALVEARE_DATABASE_URL and never shows the password.
 */
export class DatabaseUnavailableError extends Error {
  constructor(url: string, cause: unknown) {
    super(`cannot use the PostgreSQL database at ALVEARE_DATABASE_URL (${describeDatabaseUrl(url)}): ${reason(cause)}`);
    this.name = "DatabaseUnavailableError";
  }
}

/** Where a database URL points, for messages: host (or socket directory), port and database, never the password. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || u.searchParams.get("host") || "localhost"}:${u.port || "5432"}${u.pathname}`;
  } catch {
    return "an unparsable URL";
  }
}

function reason(error: unknown): string {
  const e = error as { code?: string; message?: string };
  const message = (e.message ?? String(error)).split("\n")[0] ?? "";
  if (e.code === "ECONNREFUSED") return "connection refused (is PostgreSQL running there?)";
  if (e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") return "unknown host";
  if (e.code === "28P01" || e.code === "28000") return `authentication failed (${message})`;
  if (e.code === "3D000") return `${message} (create it, or fix the database name)`;
  if (/timeout/i.test(message)) return "the connection timed out";
  return message || "unknown error";
}

// COUNT and SUM of bigint/numeric come back as text by default; every count here fits a double.
const NUMERIC_TYPES = new Set([20, 1700]);
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    NUMERIC_TYPES.has(oid) ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * One pool per process: every store of a backend shares it. Errors of idle
 * connections (the server restarting) are swallowed here; the next query on a
 * fresh connection reports whatever is still wrong. Every statement is cut by
 * the client too (STATEMENT_CLIENT_TIMEOUT_MS), unless `unbounded`: migrations
 * and copies, which lift the server's limit and may wait for another node's.
 */
export function openPool(
  url: string,
  options: { max?: number; statementTimeoutMs?: number; connectTimeoutMs?: number; unbounded?: boolean } = {},
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? POOL_SIZE,
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    statement_timeout: options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS,
    ...(options.unbounded === true ? {} : { query_timeout: STATEMENT_CLIENT_TIMEOUT_MS }),
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    idle_in_transaction_session_timeout: STATEMENT_TIMEOUT_MS * 2,
    application_name: "alveare",
    types,
  });
  pool.on("error", () => undefined);
  return pool;
}

/**
 * The pool for the statements requests wait for: the server cuts them at
 * REQUEST_SERVER_TIMEOUT_MS, and a new connection gets as long as a statement.
 */
export const openRequestPool = (url: string): pg.Pool =>
  openPool(url, { statementTimeoutMs: REQUEST_SERVER_TIMEOUT_MS, connectTimeoutMs: REQUEST_STATEMENT_TIMEOUT_MS });

/**
 * A statement a request waits for (on the request pool, where there is one),
 * cut by the client after REQUEST_STATEMENT_TIMEOUT_MS.
 */
export function requestQuery<R extends pg.QueryResultRow>(pool: pg.Pool, text: string, values: unknown[], name?: string): Promise<pg.QueryResult<R>> {
  // pg reads `query_timeout` per statement too, though its types only know it on the client's config.
  const statement: pg.QueryConfig & { query_timeout: number } = { text, values, query_timeout: REQUEST_STATEMENT_TIMEOUT_MS };
  if (name !== undefined) statement.name = name;
  return pool.query<R>(statement);
}

/** Runs `body` in one transaction on one connection; rolls back on any error. */
export async function inTransaction<T>(pool: pg.Pool, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out connection has no listener of its own: one dropped between two statements must not crash the process.
  const ignore = (): void => undefined;
  client.on("error", ignore);
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    const result = await body(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    // A connection that stopped answering would keep a ROLLBACK waiting as long again: it is closed
    // instead, and the server rolls back a transaction whose connection is gone.
    if (isDatabaseConnectionFailure(error)) broken = error as Error;
    else {
      await client.query("ROLLBACK").catch((rollbackFailed: unknown) => {
        broken = rollbackFailed instanceof Error ? rollbackFailed : new Error(String(rollbackFailed));
      });
    }
    throw error;
  } finally {
    client.removeListener("error", ignore);
    // A connection whose rollback failed is in no known state: the pool closes it instead of reusing it.
    client.release(broken);
  }
}
