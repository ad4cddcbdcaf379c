import type { FastifyInstance } from "fastify";
import { errors } from "../errors.js";
import { failureKind } from "../failure-kind.js";
import type { UpstreamHealth } from "./prometheus.js";

type Phase = "starting" | "serving" | "draining";

/** Where the node is in its life: loading models, serving, or draining before exit. */
export class Lifecycle {
  private phase: Phase = "starting";

  get current(): Phase {
    return this.phase;
  }
  serving(): void {
    if (this.phase === "starting") this.phase = "serving";
  }
  drain(): void {
    this.phase = "draining";
  }

  /** Refuses new work (503 overloaded with Retry-After) unless the node is serving. */
  admitNewWork(): void {
    if (this.phase === "starting") throw errors.notServing("starting", 1);
    if (this.phase === "draining") throw errors.notServing("shutting_down", 1);
  }
}

export interface ReadinessSources {
  lifecycle: Lifecycle;
  /** Health of every remote upstream, per specialist; empty before the models load. */
  upstreams(): UpstreamHealth[];
  /** Resolves when the database answers a query; undefined when the server has none (the open gate). */
  database?: (() => Promise<void>) | undefined;
  /** Resolves when the shared Redis answers; undefined on a single node. */
  redis?: (() => Promise<void>) | undefined;
}

interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

/** A dependency that has not answered in this long is reported down: a balancer's probe must not hang with it. */
const PROBE_TIMEOUT_MS = 2_000;

async function probeCheck(probe: (() => Promise<void>) | undefined): Promise<Check | undefined> {
  if (probe === undefined) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`);
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut), PROBE_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe(), deadline]);
    return { ok: true };
  } catch (error) {
    // /ready is public: the kind of failure only, never the driver's message (it names the host and port, or the user).
    return { ok: false, error: error === timedOut ? timedOut.message : (failureKind(error) ?? "unavailable") };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Checks reported without deciding readiness. Every node shares its remote
 * upstreams: a balancer that pulled nodes for a dead upstream would pull them
 * all, and with them every specialist that still works; a request to the dead
 * one gets its own 503 instead.
 */
const REPORTED_ONLY = new Set(["upstreams"]);

/** Whether a node with these checks is ready: every check that decides passes. */
export const isReady = (checks: Record<string, Check>): boolean => Object.entries(checks).every(([name, c]) => c.ok || REPORTED_ONLY.has(name));

/** Every check by name; the node is ready when those that decide all pass (see isReady). */
export async function readinessChecks(sources: ReadinessSources): Promise<Record<string, Check>> {
  const phase = sources.lifecycle.current;
  const pools = new Map<string, { healthy: number; total: number }>();
  for (const u of sources.upstreams()) {
    const pool = pools.get(u.specialist) ?? { healthy: 0, total: 0 };
    pool.total++;
    if (u.healthy) pool.healthy++;
    pools.set(u.specialist, pool);
  }
  const down = [...pools].filter(([, p]) => p.healthy === 0).map(([id]) => id);
  const checks: Record<string, Check> = {
    engines: { ok: phase !== "starting", state: phase === "starting" ? "loading" : "loaded" },
    upstreams: { ok: down.length === 0, pools: Object.fromEntries(pools), ...(down.length > 0 ? { down } : {}) },
    shutdown: { ok: phase !== "draining", state: phase === "draining" ? "draining" : "running" },
  };
  const [database, redis] = await Promise.all([probeCheck(sources.database), probeCheck(sources.redis)]);
  if (database !== undefined) checks.database = database;
  if (redis !== undefined) checks.redis = redis;
  return checks;
}

export function readyRoute(sources: ReadinessSources) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get("/ready", async (_request, reply) => {
      const checks = await readinessChecks(sources);
      const ready = isReady(checks);
      return reply
        .code(ready ? 200 : 503)
        .header("cache-control", "no-store")
        .send({ status: ready ? "ready" : "not_ready", checks });
    });
  };
}
