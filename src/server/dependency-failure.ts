import { errors, type ApiError } from "../errors.js";
import { isRedisConnectionFailure } from "../gate/redis/connection.js";
import { isDatabaseConnectionFailure } from "../store/postgres/connection-failure.js";
import { UnrecordedOutcomeError } from "../store/store.js";

/** Redis or PostgreSQL out of reach: the 503 a client retries, wherever it surfaces (a response, or a stream's last event). */
export function dependencyFailure(error: unknown): ApiError | undefined {
  if (error instanceof UnrecordedOutcomeError) return errors.dependencyUnavailable("database", error.cause);
  if (isRedisConnectionFailure(error)) return errors.dependencyUnavailable("redis", error);
  if (isDatabaseConnectionFailure(error)) return errors.dependencyUnavailable("database", error);
  return undefined;
}
