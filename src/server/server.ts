import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { ServerConfig } from "../config/config.js";
import { AccountGate } from "../gate/account-gate.js";
import type { Gate } from "../gate/gate.js";
import { createStore } from "../store/create-store.js";
import { usageRoute } from "./routes/usage.js";
import { SpecialistRegistry } from "../specialists/registry.js";
import { VERSION } from "../version.js";
import { buildApp, type AppOptions } from "./app.js";
import { dashboardRoutes } from "../dashboard/dashboard-routes.js";
import { pageSupportRoutes } from "../dashboard/page-support-routes.js";
import { People } from "../dashboard/people.js";
import type { Stores } from "../store/store.js";
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
  const stores = options.gate === undefined ? await createStore(config, { serving: true }) : undefined;
  const accountGate = stores && new AccountGate(stores.accounts, stores.ledger, config.plans);
  const gate = options.gate ?? accountGate!;
  const closeGate = async (): Promise<void> => {
    await gate.close();
    await stores?.close();
  };
  let registry: SpecialistRegistry;
  try {
    registry = await SpecialistRegistry.create(config, options.logger);
  } catch (error) {
    await closeGate();
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
    v1Routes: stores && accountGate ? [usageRoute(stores.ledger, accountGate)] : [],
    mounts: stores ? operatorAndDashboard(stores, config) : [],
  });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await registry.close();
    await closeGate();
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
          await registry.close();
          await closeGate();
        }
      })()),
  };
}

/** The admin API and the dashboard: they need the accounts, the ledger and the people. */
function operatorAndDashboard(stores: Stores, config: ServerConfig): NonNullable<AppOptions["mounts"]> {
  const accounts = new AccountService(stores.accounts, config.plans);
  const people = new People(stores, config.adminToken);
  const { ledger } = stores;
  return [
    { prefix: "/admin/api", plugin: adminApi({ token: config.adminToken, accounts, ledger, peopleStore: stores.people, plans: config.plans, people }) },
    { prefix: "/dashboard", plugin: dashboardRoutes({ people, accounts, ledger, plans: config.plans, specialists: config.specialists }) },
    { prefix: "/dashboard", plugin: pageSupportRoutes({ people, accounts, stores, operatorSignIn: Boolean(config.adminToken) }) },
  ];
}

export { databasePath } from "../config/config.js";
