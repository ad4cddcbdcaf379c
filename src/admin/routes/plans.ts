import type { FastifyInstance } from "fastify";
import { listJson } from "../../api/resources.js";
import type { Plan } from "../../gate/plans.js";
import type { AdminApiOptions } from "./admin-context.js";

/** A plan as the admin API shows it: the config file's own field names. */
export const planJson = (plan: Plan) => ({
  name: plan.name,
  requests_per_window: plan.requestsPerWindow,
  window_seconds: plan.windowMs / 1000,
  requests_per_month: plan.requestsPerMonth,
  tokens_per_window: plan.tokensPerWindow ?? null,
  max_concurrent_requests: plan.maxConcurrentRequests ?? null,
  max_keys: plan.maxKeys,
  specialists: plan.specialists === "*" ? "*" : [...plan.specialists],
});

/** The plans this server serves (its config file's), smallest monthly quota first: what an account may be put on. */
export function planRoutes(app: FastifyInstance, { plans }: AdminApiOptions): void {
  app.get("/plans", async () =>
    listJson(
      Object.values(plans)
        .sort((a, b) => a.requestsPerMonth - b.requestsPerMonth || a.name.localeCompare(b.name))
        .map(planJson),
    ),
  );
}
