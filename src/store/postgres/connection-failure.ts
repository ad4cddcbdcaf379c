import { NotSentError } from "../../group-writer.js";

/**
 * Whether an error from the PostgreSQL driver means the database could not be
 * reached or gave up on us (a dependency outage the client may retry), as
 * opposed to a query the database refused (a bug, which must stay a 500).
 */
export function isDatabaseConnectionFailure(error: unknown): boolean {
  if (error instanceof NotSentError) return isDatabaseConnectionFailure(error.cause);
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    if (SOCKET_CODES.has(code)) return true;
    // SQLSTATE class 08 (connection exception), the server shutting down or starting, too many connections, statement timeout,
    // or a database that takes no writes (a standby, or one switched to read-only): an outage until a failover ends it.
    if (/^08[0-9A-Z]{3}$/.test(code) || SERVER_CODES.has(code)) return true;
    // Refused at connect: the login (rotated password, removed role), the database (dropped, renamed) or its connections (switched off).
    if (LOGIN_CODES.has(code) || (code === "55000" && /not currently accepting connections/.test(error.message))) return true;
  }
  // pg raises these without a code: the socket closed under a query, the pool's connect timeout, a client already broken, our own query_timeout.
  return DRIVER_MESSAGES.test(error.message) || isUnansweredStatement(error);
}

/** read_only_sql_transaction: what a standby (or `default_transaction_read_only`) answers a write. */
export const READ_ONLY_SQLSTATE = "25006";

/** The database answers but takes no writes (/ready): it counts as out of reach, as a write would find it. */
export class ReadOnlyDatabaseError extends Error {
  override name = "ReadOnlyDatabaseError";
  readonly code = READ_ONLY_SQLSTATE;
  constructor() {
    super("the database takes no writes (a standby, or default_transaction_read_only is on)");
  }
}

const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
/** admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, query_canceled (statement_timeout), read_only_sql_transaction. */
const SERVER_CODES = new Set(["57P01", "57P02", "57P03", "53300", "57014", READ_ONLY_SQLSTATE]);
/** invalid_authorization_specification, invalid_password, invalid_catalog_name (no such database). */
const LOGIN_CODES = new Set(["28000", "28P01", "3D000"]);
const DRIVER_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Connection timeout)/;

/**
 * The client gave up waiting for an answer (`query_timeout`): the statement was
 * sent and may still commit on the server, unlike a refused connection.
 */
export function isUnansweredStatement(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("Query read timeout");
}
