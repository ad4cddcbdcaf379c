/** System errors' codes in words that carry no address: their messages name the host and port. */
export const NETWORK_REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed",
  ETIMEDOUT: "timed out",
  ENOTFOUND: "unknown host",
  EAI_AGAIN: "host lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_SOCKET: "connection closed",
};

/** PostgreSQL's refusals of a connection, by SQLSTATE. */
const POSTGRES_REASONS: Readonly<Record<string, string>> = {
  "28000": "login refused",
  "28P01": "login refused",
  "3D000": "no such database",
  "53300": "too many connections",
  "55000": "not accepting connections",
  "57P01": "shut down by an administrator",
  "57P03": "not accepting connections yet",
  "25006": "read-only",
};

/** Redis's answers that it cannot serve now, by the word they start with (the rest is not used). */
const REDIS_REPLY_REASONS: ReadonlyMap<string, string> = new Map([
  ["LOADING", "loading its data"],
  ["MASTERDOWN", "its primary is down"],
  ["READONLY", "read-only replica"],
]);

/**
 * A replica refusing a write: "READONLY …" (Redis 7, and any command), or, from Redis 5 and 6, a script's write
 * wrapped in the script's error ("ERR Error running script (call to f_…): @user_script:1: @user_script: 1: -READONLY
 * You can't write against a read only replica.").
 */
export const isReplicaRefusal = (message: string): boolean => /^(ERR Error running script\b.*-)?READONLY /.test(message);

/** Why Redis says it cannot serve now (loading, its primary down, a replica), or undefined for any other reply. */
export const redisReplyReason = (message: string): string | undefined =>
  REDIS_REPLY_REASONS.get(isReplicaRefusal(message) ? "READONLY" : message.split(" ", 1)[0]!);

/** What kind of failure an error is, never its message (which may name a host, a port or a user), or `undefined` when unknown. */
export function failureKind(error: unknown): string | undefined {
  if (error instanceof Error && error.name === "ReplyError") return redisReplyReason(error.message);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  return NETWORK_REASONS[code] ?? POSTGRES_REASONS[code];
}
