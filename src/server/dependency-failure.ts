import type { FastifyBaseLogger } from "fastify";
import { DependencyUnavailableError, errors, UpstreamError, type ApiError } from "../errors.js";
import { isRedisConnectionFailure } from "../gate/redis/connection.js";
import { isDatabaseConnectionFailure } from "../store/postgres/connection-failure.js";
import { isSqliteBusy } from "../store/sqlite/busy.js";
import { UnrecordedOutcomeError } from "../store/store.js";
import type { Telemetry } from "../observability/telemetry.js";

/** Redis or PostgreSQL out of reach, or the SQLite file locked past the busy timeout: the 503 a client retries, wherever it surfaces (a response, or a stream's last event). */
export function dependencyFailure(error: unknown): ApiError | undefined {
  if (error instanceof UnrecordedOutcomeError) return errors.dependencyUnavailable("database", error.cause);
  if (isRedisConnectionFailure(error)) return errors.dependencyUnavailable("redis", error);
  if (isDatabaseConnectionFailure(error)) return errors.dependencyUnavailable("database", error);
  if (isSqliteBusy(error)) return errors.dependencyUnavailable("database", error);
  return undefined;
}

/**
 * What an operator learns of a failure the server answers, whether as a
 * response or as a stream's last event: a shared store out of reach is counted
 * and logged, a remote engine's failure logged with its cause (the client's
 * message leaves the cause out). False for any other error.
 */
export function reportFailure(error: ApiError, log: FastifyBaseLogger, telemetry: Telemetry): boolean {
  if (error instanceof DependencyUnavailableError) {
    telemetry.dependencyFailure(error.dependency);
    log.warn({ err: error.cause, dependency: error.dependency }, "a shared dependency is unavailable");
    return true;
  }
  if (error.code === "upstream_error") {
    const from = error instanceof UpstreamError ? error.upstream : undefined;
    log.warn({ err: error.cause, status: error.status, upstream: from?.url, model: from?.model }, error.message);
    return true;
  }
  return false;
}
