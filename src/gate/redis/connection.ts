import { Redis } from "ioredis";
import { NotSentError } from "../../group-writer.js";
import { isReplicaRefusal, redisReplyReason } from "../../failure-kind.js";

/** How long one command may take before the request it serves is refused as 503 dependency_unavailable (a disconnected Redis fails at once). */
export const COMMAND_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 2000;

/**
 * One connection to the shared Redis, made to fail fast: while it is down
 * commands are not queued (a request must not wait for a reconnect), and it
 * reconnects in the background so the node recovers by itself.
 */
export interface RedisConnection {
  redis: Redis;
  /** Every key this node writes starts with it (ALVEARE_REDIS_PREFIX, default `alveare:`). */
  prefix: string;
}

export function redisClient(url: string, name: string): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    connectionName: name,
    // The commands of all requests issued in one event-loop turn go out in one write: a socket write costs more CPU than the command.
    enableAutoPipelining: true,
    // Reconnect for ever, at most every 2 s: the node recovers when Redis returns.
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
    // A failover behind one address (a managed Redis's endpoint) leaves this connection on the demoted node, a replica
    // refusing every write for as long as it stands: a refusal reconnects, to whatever the address now reaches. The
    // refused command is not sent again (its request is already answered 503).
    reconnectOnError: (error: Error) => (isReplicaRefusal(error.message) ? 1 : false),
  });
  // Errors surface on the commands that fail; the connection's own events would only crash the process.
  // The last one is kept: while disconnected, commands fail with "Stream isn't writeable", which says nothing of why.
  redis.on("error", (error: Error) => void lastConnectionErrors.set(redis, error));
  redis.on("ready", () => void lastConnectionErrors.delete(redis));
  return redis;
}

const lastConnectionErrors = new WeakMap<Redis, Error>();

/** Why this connection is down (the last connection error, such as ECONNREFUSED), or undefined while it is up or none was seen. */
export function whyDisconnected(redis: Redis): Error | undefined {
  return redis.status === "ready" ? undefined : lastConnectionErrors.get(redis);
}

/** Connects once at start: an unreachable Redis or a wrong password stops the node with one line naming the variable. */
export async function connectRedis(url: string, prefix: string, name = "alveare"): Promise<RedisConnection> {
  let redis: Redis;
  try {
    redis = redisClient(url, name);
  } catch (error) {
    throw new RedisStartError(`ALVEARE_REDIS_URL: ${(error as Error).message}`);
  }
  // ioredis rejects a failed connect with "Connection is closed."; the reason is in the error event before it.
  let lastError: Error | undefined;
  const remember = (error: Error): void => {
    lastError = error;
  };
  redis.on("error", remember);
  try {
    await redis.connect();
    await redis.ping();
    // ioredis selects the URL's database on connect and only logs a refusal; asking again surfaces it.
    const db = redis.options.db ?? 0;
    if (db !== 0) await redis.select(db);
  } catch (error) {
    redis.disconnect();
    throw new RedisStartError(`ALVEARE_REDIS_URL: cannot use Redis at ${safeUrl(url)}: ${startFailure(lastError ?? (error as Error))}`);
  } finally {
    redis.removeListener("error", remember);
  }
  return { redis, prefix };
}

/** Why Redis could not be used, in one line. */
function startFailure(error: Error): string {
  const code = (error as { code?: string }).code;
  if (code === "ECONNREFUSED") return "connection refused (is Redis running there?)";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "unknown host";
  // Redis asks for a password the URL does not give: its own words name a HELLO or a command the operator never sent.
  if (/^NOAUTH\b/.test(error.message))
    return "this Redis requires a password and the URL gives none (put it in the URL: redis://:PASSWORD@host:port, or redis://USER:PASSWORD@host:port for an ACL user)";
  if (/DB index is out of range/i.test(error.message))
    return "the database number in the URL does not exist on this Redis (see its `databases` setting)";
  return error.message.split("\n")[0] ?? "unknown error";
}

export class RedisStartError extends Error {
  override name = "RedisStartError";
}

/** The URL without its password, for messages and logs. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * Whether an error from the Redis client means Redis could not be reached or
 * did not answer in time (an outage the client may retry), as opposed to a
 * script or command Redis refused (a bug, which must stay a 500).
 */
export function isRedisConnectionFailure(error: unknown): boolean {
  if (error instanceof NotSentError) return isRedisConnectionFailure(error.cause);
  if (!(error instanceof Error)) return false;
  // Raised by ioredis: no connection and no offline queue, the connection lost under a command, the command timeout, retries spent.
  if (error.name === "MaxRetriesPerRequestError") return true;
  if (/^(Stream isn't writeable|Connection is closed|Command timed out)/.test(error.message)) return true;
  // Redis itself, not yet able to serve: loading its data, or its primary gone; or a replica (a failover
  // pointed the URL at one), which answers reads but refuses every write, a script's included.
  return error.name === "ReplyError" && redisReplyReason(error.message) !== undefined;
}

/** ioredis's command timeout: the command was sent on a connection that still stands, and its answer did not come in time. */
export function timedOut(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("Command timed out");
}

/** An error after which a script may have run in Redis: it was sent, and its answer was lost. Never sent (no connection): nothing to take back. */
export function mayHaveRun(error: unknown): boolean {
  return error instanceof Error && (error.name === "MaxRetriesPerRequestError" || /^(Command timed out|Connection is closed)/.test(error.message));
}
