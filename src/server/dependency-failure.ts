import type { FastifyBaseLogger } from "fastify";
import { DependencyUnavailableError, UpstreamError, type ApiError } from "../errors.js";
import type { Telemetry } from "../observability/telemetry.js";

/** While a dependency stays out of reach, its warning is written at most once in this long. */
export const OUTAGE_WARNING_INTERVAL_MS = 10_000;

/**
 * An outage refuses every request that needs the dependency: hundreds a second, each with its request line
 * (code dependency_unavailable) and its count in alveare_dependency_failures_total. The warning with the
 * driver's error is written for the first, then once per interval, saying how many went unwritten between.
 */
class OutageWarnings {
  private readonly last = new Map<string, { at: number; unwritten: number }>();

  /** Undefined: not now. Else how many refusals went unwritten since the last warning. */
  take(dependency: string, now: number): number | undefined {
    const last = this.last.get(dependency);
    if (last !== undefined && now - last.at < OUTAGE_WARNING_INTERVAL_MS) {
      last.unwritten++;
      return undefined;
    }
    this.last.set(dependency, { at: now, unwritten: 0 });
    return last?.unwritten ?? 0;
  }
}

/** One per server: keyed by its root logger, which its app and routes share. */
const outageWarnings = new WeakMap<object, OutageWarnings>();

/**
 * What an operator learns of a failure the server answers, whether as a
 * response or as a stream's last event: a shared store out of reach is counted
 * and logged (see OutageWarnings), a remote engine's failure logged with its cause (the client's
 * message leaves the cause out). False for any other error.
 */
export function reportFailure(error: ApiError, log: FastifyBaseLogger, telemetry: Telemetry, server: object): boolean {
  if (error instanceof DependencyUnavailableError) {
    telemetry.dependencyFailure(error.dependency);
    let warnings = outageWarnings.get(server);
    if (warnings === undefined) outageWarnings.set(server, (warnings = new OutageWarnings()));
    const unwritten = warnings.take(error.dependency, Date.now());
    if (unwritten !== undefined) {
      const since = unwritten > 0 ? { refusals_unlogged_since_last_warning: unwritten } : {};
      log.warn({ err: error.cause, dependency: error.dependency, ...since }, "a shared dependency is unavailable");
    }
    return true;
  }
  if (error.code === "upstream_error") {
    const from = error instanceof UpstreamError ? error.upstream : undefined;
    log.warn({ err: error.cause, status: error.status, upstream: from?.url, model: from?.model }, error.message);
    return true;
  }
  return false;
}
