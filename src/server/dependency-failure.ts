import { errors, type ApiError } from "../errors.js";
import { isRedisConnectionFailure } from "../gate/redis/connection.js";
import { isDatabaseConnectionFailure } from "../store/postgres/connection-failure.js";

/** Redis or PostgreSQL out of reach: the 503 a client retries, wherever it surfaces (a response, or a stream's last event). */
export function dependencyFailure(error: unknown): ApiError | undefined {
  if (isRedisConnectionFailure(error)) return errors.dependencyUnavailable("redis", error);
  if (isDatabaseConnectionFailure(error)) return errors.dependencyUnavailable("database", error);
  return undefined;
}
