import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { DEFAULT_REDIS_PREFIX, type ServerConfig } from "../config/config.js";
import { openRedisBackends, type RedisBackends } from "../gate/redis/shared-backends.js";
import { AccountGate } from "../gate/account-gate.js";
import type { Gate } from "../gate/gate.js";
import { createStore } from "../store/create-store.js";
import { usageRoute } from "./routes/usage.js";
import { SpecialistRegistry } from "../specialists/registry.js";
import { VERSION } from "../version.js";
import { buildApp, type AppOptions } from "./app.js";
import { dashboardHome, dashboardRoutes } from "../dashboard/dashboard-routes.js";
import { People } from "../accounts/people.js";
import type { AuditLog } from "../store/audit-log.js";
import type { Stores } from "../store/store.js";
import { adminApi } from "../admin/admin-api.js";
import { hostGuard } from "../dashboard/host-guard.js";
import { AccountService } from "../accounts/accounts.js";
import { warnOfUnservedPlans } from "../accounts/unserved-plans.js";
import { Observability } from "../observability/observability.js";
import { loadSources } from "../observability/engine-load.js";
import { Lifecycle } from "../observability/readiness.js";
import { OBSERVABILITY_OFF } from "../observability/settings.js";
import type { SpecialistSource } from "./app.js";
import { checkSpecialistSchemas } from "./specialist-schemas.js";
import { changeBroadcast } from "./change-broadcast.js";

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  registry: SpecialistRegistry;
  lifecycle: Lifecycle;
  /** Where Prometheus scrapes; undefined when metrics are off. */
  metricsUrl: string | undefined;
  /**
   * Drains: /ready and new requests get 503 at once, queued requests get 503
   * overloaded, running ones may finish for `drainMs` and are then cut like a
   * disconnect; then the listeners close and the models are freed.
   */
  close(drainMs?: number): Promise<void>;
}

export interface StartOptions {
  logger: Logger;
  /** Replaces the account gate (the open gate: benchmarks' baseline, inference-only tests). */
  gate?: Gate | undefined;
  /** Called once the port listens, before the models load; start-up waits for it (tests look at /ready here). */
  onListening?: ((url: string) => Promise<void> | void) | undefined;
  /** Where the standard OTEL_* variables are read; process.env when absent. */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

export async function startServer(config: ServerConfig, options: StartOptions): Promise<RunningServer> {
  // Before anything opens or loads: a schema no request could be served with is the config file's mistake.
  await checkSpecialistSchemas(config.specialists);
  const stores =
    options.gate === undefined ? await createStore(config, { serving: true, warn: (message) => options.logger.warn(message) }) : undefined;
  let redis: RedisBackends | undefined;
  if (stores !== undefined && config.redisUrl !== undefined) {
    try {
      redis = await openRedisBackends(
        config.redisUrl,
        config.redisPrefix ?? DEFAULT_REDIS_PREFIX,
        stores,
        options.logger.child({ component: "redis" }),
      );
    } catch (error) {
      await stores.close();
      throw error;
    }
  }
  const accountGate = stores && new AccountGate(stores.accounts, stores.ledger, config.plans, redis?.parts);
  const stopPruning = stores && pruneAuditLog(stores.audit, config.auditRetentionDays, options.logger);
  if (stores !== undefined) void warnOfUnservedPlans(stores.accounts, config.plans, options.logger);
  const gate = options.gate ?? accountGate!;
  const closeGate = async (): Promise<void> => {
    stopPruning?.();
    await gate.close();
    const endsOwed = (await redis?.close())?.endsOwed ?? 0;
    if (endsOwed > 0) {
      options.logger.warn(
        { ends_owed: endsOwed },
        "request ends that could not reach Redis at shutdown: their concurrency slots free themselves within 30 s and their token reservations leave the window within its length",
      );
    }
    await stores?.close();
  };
  // The port listens while the models load, so /ready can say "loading"; /v1 refuses work until then.
  const lifecycle = new Lifecycle();
  let registry: SpecialistRegistry | undefined;
  const specialists: SpecialistSource = { get: (id) => registry?.get(id), list: () => registry?.list() ?? [] };
  const sources = loadSources(() => specialists.list());
  const observability = await Observability.start({
    settings: config.observability ?? OBSERVABILITY_OFF,
    env: options.env ?? process.env,
    specialists: config.specialists.map((s) => s.id),
    sources,
    version: VERSION,
    warn: (spansDropped, reason) =>
      options.logger.warn(
        { component: "tracing", spans_dropped: spansDropped, reason },
        "trace export failed: spans dropped (check OTEL_EXPORTER_OTLP_ENDPOINT and the collector); said at most once a minute",
      ),
  }).catch(async (error: unknown) => {
    await closeGate();
    throw error;
  });
  const shutdown = new AbortController();
  const app = await buildApp({
    specialists,
    telemetry: observability,
    lifecycle,
    readiness: {
      lifecycle,
      upstreams: () => sources.upstreams(),
      database: stores && (stores.writable ?? (async () => void (await stores.accounts.getAccount("")))),
      redis: redis?.probe,
    },
    gate,
    logger: options.logger,
    version: VERSION,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    http: config.http,
    shutdown: shutdown.signal,
    v1Routes: stores && accountGate ? [usageRoute(stores.ledger, accountGate)] : [],
    mounts: stores ? operatorAndDashboard(stores, config, redis) : [],
    adminToken: config.adminToken,
  });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await observability.close();
    await closeGate();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  let loaded: SpecialistRegistry;
  try {
    await options.onListening?.(url);
    loaded = registry = await SpecialistRegistry.create(config, options.logger);
  } catch (error) {
    await app.close();
    await observability.close();
    await closeGate();
    throw error;
  }
  lifecycle.serving();
  let closing: Promise<void> | undefined;
  return {
    app,
    url,
    registry: loaded,
    lifecycle,
    metricsUrl: observability.metricsUrl,
    close: (drainMs = 10_000) =>
      (closing ??= (async () => {
        lifecycle.drain();
        const timer = setTimeout(() => {
          shutdown.abort(new Error("server shutting down"));
          // A connection that never sent a request (a balancer's or a browser's preconnect) would hold
          // the close past the deadline: cut everything once the cut requests have had a moment to end.
          setTimeout(() => app.server.closeAllConnections(), CUT_GRACE_MS).unref();
        }, drainMs);
        try {
          // Engines refuse their queues at once (503 overloaded) and wait for running requests.
          await loaded.close();
          await app.close();
        } finally {
          clearTimeout(timer);
          shutdown.abort(new Error("server shutting down"));
          await closeGate();
          await observability.close();
        }
      })()),
  };
}

/** After the drain deadline, how long requests cut by it get to write their last event before every connection is closed. */
const CUT_GRACE_MS = 1_000;

const PRUNE_EVERY_MS = 60 * 60 * 1000;

/** Prunes audit records past their retention now and every hour; returns the stop switch. */
function pruneAuditLog(audit: AuditLog, retentionDays: number, logger: Logger): () => void {
  const prune = (): void => {
    audit
      .prune(new Date(Date.now() - retentionDays * 24 * 60 * 60 * 1000))
      .then((pruned) => {
        if (pruned > 0) logger.info({ pruned, retention_days: retentionDays }, "pruned old audit records");
      })
      .catch((error: unknown) => logger.error({ err: error }, "pruning the audit log failed"));
  };
  prune();
  const timer = setInterval(prune, PRUNE_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** The admin API and the dashboard: they need the accounts, the ledger and the people. */
function operatorAndDashboard(stores: Stores, config: ServerConfig, redis: RedisBackends | undefined): NonNullable<AppOptions["mounts"]> {
  const broadcast = redis && changeBroadcast(redis);
  const accounts = new AccountService(stores, config.plans, broadcast?.changed, broadcast?.ready);
  const people = new People(stores, config.adminToken, { failures: redis?.failures, keyRevocations: broadcast });
  const { ledger } = stores;
  const checkHost = hostGuard(config);
  return [
    {
      prefix: "/admin/api",
      plugin: adminApi({
        token: config.adminToken,
        accounts,
        ledger,
        peopleStore: stores.people,
        plans: config.plans,
        people,
        audit: stores.audit,
        publicUrl: config.publicUrlGiven === true ? config.publicUrl : undefined,
        checkHost,
      }),
    },
    {
      prefix: "/dashboard",
      plugin: dashboardRoutes({
        people,
        accounts,
        ledger,
        audit: stores.audit,
        plans: config.plans,
        specialists: config.specialists,
        stores,
        operatorSignIn: Boolean(config.adminToken),
        checkHost,
      }),
    },
    { prefix: "", plugin: dashboardHome },
  ];
}

export { databasePath } from "../config/config.js";
