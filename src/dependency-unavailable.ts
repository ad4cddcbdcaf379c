import { errors, type ApiError, type DependencyStage } from "./errors.js";
import { isRedisConnectionFailure } from "./gate/redis/connection.js";
import { isDatabaseConnectionFailure } from "./store/postgres/connection-failure.js";
import { isSqliteBusy } from "./store/sqlite/busy.js";
import { UnrecordedOutcomeError } from "./store/store.js";

/**
 * Redis or PostgreSQL out of reach, or the SQLite file locked past the busy timeout: the 503 a client retries,
 * wherever it surfaces (a response, a stream's last event, the outcome a metric records); undefined for any other error.
 */
export function dependencyFailure(error: unknown, stage: Exclude<DependencyStage, "outcome"> = "admission"): ApiError | undefined {
  if (error instanceof UnrecordedOutcomeError) return errors.dependencyUnavailable("database", error.cause, "outcome");
  if (isRedisConnectionFailure(error)) return errors.dependencyUnavailable("redis", error, stage);
  if (isDatabaseConnectionFailure(error) || isSqliteBusy(error)) return errors.dependencyUnavailable("database", error, stage);
  return undefined;
}
