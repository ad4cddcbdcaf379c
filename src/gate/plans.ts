import { ConfigError } from "../config/config-error.js";
import { plansTable } from "../config/schemas.js";
import { parseConfigPart } from "../schema/config-errors.js";

export interface Plan {
  name: string;
  /** Requests per window, per API key. */
  requestsPerWindow: number;
  /** The rate-limit window; 60 s unless the config says otherwise. */
  windowMs: number;
  /** Requests per calendar month (UTC), per account and mode. */
  requestsPerMonth: number;
  /** Specialist ids, or "*" for all of them. */
  specialists: readonly string[] | "*";
  /** Unrevoked API keys per account and mode: each key has its own minute limit. */
  maxKeys: number;
  /** Prompt + completion tokens per window, per API key; undefined: no cap. */
  tokensPerWindow?: number | undefined;
  /** Requests in flight at once, per API key; undefined: no cap. */
  maxConcurrentRequests?: number | undefined;
}

export const DEFAULT_MAX_KEYS = 25;

export const DEFAULT_PLANS: Readonly<Record<string, Plan>> = {
  solo: {
    name: "solo",
    requestsPerWindow: 20,
    windowMs: 60_000,
    requestsPerMonth: 10_000,
    specialists: ["classify", "summarise", "extract"],
    maxKeys: DEFAULT_MAX_KEYS,
  },
  starter: {
    name: "starter",
    requestsPerWindow: 100,
    windowMs: 60_000,
    requestsPerMonth: 100_000,
    specialists: ["classify", "summarise", "extract", "qa", "chat"],
    maxKeys: DEFAULT_MAX_KEYS,
  },
  professional: {
    name: "professional",
    requestsPerWindow: 500,
    windowMs: 60_000,
    requestsPerMonth: 500_000,
    specialists: "*",
    maxKeys: DEFAULT_MAX_KEYS,
  },
  scale: { name: "scale", requestsPerWindow: 2_000, windowMs: 60_000, requestsPerMonth: 2_000_000, specialists: "*", maxKeys: DEFAULT_MAX_KEYS },
};

/**
 * The plan of that name. Plan names arrive from operators and requests, so an
 * inherited property (`constructor`, `__proto__`) must never pass for a plan.
 */
export const findPlan = (plans: Readonly<Record<string, Plan>>, name: string): Plan | undefined =>
  Object.hasOwn(plans, name) ? plans[name] : undefined;

/**
 * An account's plan, as its reports show it. One the config no longer defines (removed from the file while
 * accounts were on it) allows nothing here, which is what its keys meet (403): no specialist, no request in a
 * month. Its usage and plan pages still read, so the operator sees it and can move the account.
 */
export const reportedPlan = (plans: Readonly<Record<string, Plan>>, account: { plan: string }): Plan =>
  findPlan(plans, account.plan) ?? { name: account.plan, requestsPerWindow: 0, windowMs: 60_000, requestsPerMonth: 0, specialists: [], maxKeys: 0 };

export const planAllows = (plan: Plan, specialistId: string): boolean => plan.specialists === "*" || plan.specialists.includes(specialistId);

/**
 * The config file's `plans` table over the defaults: a known plan changes field
 * by field, a new name adds a plan (all fields required).
 */
export function parsePlans(raw: unknown): Record<string, Plan> {
  // No prototype: a lookup by any name finds only the plans defined here.
  const plans: Record<string, Plan> = Object.assign(Object.create(null) as Record<string, Plan>, DEFAULT_PLANS);
  if (raw === undefined) return plans;
  for (const [name, value] of Object.entries(parseConfigPart(plansTable, raw, "plans"))) {
    const base = findPlan(plans, name);
    const missing = (field: string): never => {
      throw new ConfigError(`plans.${name}.${field}`, "is required for a new plan");
    };
    plans[name] = {
      name,
      requestsPerWindow: value.requests_per_minute ?? base?.requestsPerWindow ?? missing("requests_per_minute"),
      windowMs: value.window_seconds !== undefined ? Math.round(value.window_seconds * 1000) : (base?.windowMs ?? 60_000),
      requestsPerMonth: value.requests_per_month ?? base?.requestsPerMonth ?? missing("requests_per_month"),
      specialists: value.specialists ?? base?.specialists ?? missing("specialists"),
      maxKeys: value.max_keys ?? base?.maxKeys ?? DEFAULT_MAX_KEYS,
      tokensPerWindow: value.tokens_per_minute ?? base?.tokensPerWindow,
      maxConcurrentRequests: value.max_concurrent_requests ?? base?.maxConcurrentRequests,
    };
  }
  return plans;
}
