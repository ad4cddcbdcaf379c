import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { databasePath, type ServerConfig } from "../config/config.js";
import { AccountGate } from "../gate/account-gate.js";
import type { Gate } from "../gate/gate.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import { usageRoute } from "./routes/usage.js";
import { SpecialistRegistry } from "../specialists/registry.js";
import { VERSION } from "../version.js";
import { buildApp, type AppOptions } from "./app.js";
import { dashboardRoutes } from "../dashboard/dashboard-routes.js";
import { pageSupportRoutes } from "../dashboard/page-support-routes.js";
import { People } from "../dashboard/people.js";
import type { Store } from "../store/store.js";
import { adminApi } from "../admin/admin-api.js";
import { AccountService } from "../gate/accounts.js";

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  registry: SpecialistRegistry;
  /** Stops accepting, lets in-flight requests finish for `graceMs`, aborts the rest, frees the models. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger: Logger;
  /** Replaces the account gate (the open gate: benchmarks' baseline, inference-only tests). */
  gate?: Gate | undefined;
}

export async function startServer(config: ServerConfig, options: StartOptions): Promise<RunningServer> {
  const store = options.gate === undefined ? new SqliteStore(databasePath(config), { serving: true }) : undefined;
  const stopPruning = store && pruneAuditLog(store, config.auditRetentionDays, options.logger);
  const accountGate = store && new AccountGate(store, config.plans);
  const gate = options.gate ?? accountGate!;
  let registry: SpecialistRegistry;
  try {
    registry = await SpecialistRegistry.create(config, options.logger);
  } catch (error) {
    await gate.close();
    throw error;
  }
  const shutdown = new AbortController();
  const app = await buildApp({
    specialists: registry,
    gate,
    logger: options.logger,
    version: VERSION,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    http: config.http,
    shutdown: shutdown.signal,
    v1Routes: store && accountGate ? [usageRoute(store, accountGate)] : [],
    mounts: store ? operatorAndDashboard(store, config) : [],
  });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await registry.close();
    await gate.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  let closing: Promise<void> | undefined;
  return {
    app,
    url: `http://${host}:${port}`,
    registry,
    close: (graceMs = 10_000) =>
      (closing ??= (async () => {
        const timer = setTimeout(() => shutdown.abort(new Error("server shutting down")), graceMs);
        try {
          await app.close();
        } finally {
          clearTimeout(timer);
          shutdown.abort(new Error("server shutting down"));
          stopPruning?.();
          await registry.close();
          await gate.close();
        }
      })()),
  };
}

const PRUNE_EVERY_MS = 60 * 60 * 1000;

/** Prunes audit records past their retention now and every hour; returns the stop switch. */
function pruneAuditLog(store: Store, retentionDays: number, logger: Logger): () => void {
  const prune = (): void => {
    store.audit.prune(new Date(Date.now() - retentionDays * 24 * 60 * 60 * 1000))
      .then((pruned) => { if (pruned > 0) logger.info({ pruned, retention_days: retentionDays }, "pruned old audit records"); })
      .catch((error: unknown) => logger.error({ err: error }, "pruning the audit log failed"));
  };
  prune();
  const timer = setInterval(prune, PRUNE_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** The admin API and the dashboard: both need the account store. */
function operatorAndDashboard(store: Store, config: ServerConfig): NonNullable<AppOptions["mounts"]> {
  const accounts = new AccountService(store, config.plans);
  const people = new People(store, config.adminToken);
  return [
    { prefix: "/admin/api", plugin: adminApi({ token: config.adminToken, accounts, store, plans: config.plans, people }) },
    { prefix: "/dashboard", plugin: dashboardRoutes({ people, accounts, store, plans: config.plans, specialists: config.specialists }) },
    { prefix: "/dashboard", plugin: pageSupportRoutes({ people, accounts, store, operatorSignIn: Boolean(config.adminToken) }) },
  ];
}

export { databasePath } from "../config/config.js";
