import { ConfigError } from "../config/config-error.js";
import { isFields, numberAt, onlyKeys, stringListAt } from "../config/fields.js";

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
}

export const DEFAULT_MAX_KEYS = 25;

export const DEFAULT_PLANS: Readonly<Record<string, Plan>> = {
  solo: { name: "solo", requestsPerWindow: 20, windowMs: 60_000, requestsPerMonth: 10_000, specialists: ["classify", "summarise", "extract"], maxKeys: DEFAULT_MAX_KEYS },
  starter: { name: "starter", requestsPerWindow: 100, windowMs: 60_000, requestsPerMonth: 100_000, specialists: ["classify", "summarise", "extract", "qa", "chat"], maxKeys: DEFAULT_MAX_KEYS },
  professional: { name: "professional", requestsPerWindow: 500, windowMs: 60_000, requestsPerMonth: 500_000, specialists: "*", maxKeys: DEFAULT_MAX_KEYS },
  scale: { name: "scale", requestsPerWindow: 2_000, windowMs: 60_000, requestsPerMonth: 2_000_000, specialists: "*", maxKeys: DEFAULT_MAX_KEYS },
};

/**
 * The plan of that name. Plan names arrive from operators and requests, so an
 * inherited property (`constructor`, `__proto__`) must never pass for a plan.
 */
export const findPlan = (plans: Readonly<Record<string, Plan>>, name: string): Plan | undefined =>
  Object.hasOwn(plans, name) ? plans[name] : undefined;

export const planAllows = (plan: Plan, specialistId: string): boolean =>
  plan.specialists === "*" || plan.specialists.includes(specialistId);

/**
 * The config file's `plans` table over the defaults: a known plan changes field
 * by field, a new name adds a plan (all fields required).
 */
export function parsePlans(raw: unknown): Record<string, Plan> {
  // No prototype: a lookup by any name finds only the plans defined here.
  const plans: Record<string, Plan> = Object.assign(Object.create(null) as Record<string, Plan>, DEFAULT_PLANS);
  if (raw === undefined) return plans;
  if (!isFields(raw)) throw new ConfigError("plans", "must be an object keyed by plan name");
  for (const [name, value] of Object.entries(raw)) {
    const path = `plans.${name}.`;
    if (!/^[a-z0-9][a-z0-9_-]{0,40}$/.test(name)) throw new ConfigError(`plans.${name}`, "name must be lowercase letters, digits, '-' or '_'");
    if (!isFields(value)) throw new ConfigError(`plans.${name}`, "must be an object");
    onlyKeys(value, ["requests_per_minute", "requests_per_month", "window_seconds", "specialists", "max_keys"], path);
    const base = findPlan(plans, name);
    const missing = (field: string): never => {
      throw new ConfigError(`${path}${field}`, "is required for a new plan");
    };
    const specialists = value.specialists === "*" ? "*" : stringListAt(value, "specialists", path);
    const windowSeconds = numberAt(value, "window_seconds", path, { min: 0.1, max: 86_400 });
    plans[name] = {
      name,
      requestsPerWindow: numberAt(value, "requests_per_minute", path, { min: 1, max: 10_000_000, integer: true }) ?? base?.requestsPerWindow ?? missing("requests_per_minute"),
      windowMs: windowSeconds !== undefined ? Math.round(windowSeconds * 1000) : (base?.windowMs ?? 60_000),
      requestsPerMonth: numberAt(value, "requests_per_month", path, { min: 0, max: 1e12, integer: true }) ?? base?.requestsPerMonth ?? missing("requests_per_month"),
      specialists: specialists ?? base?.specialists ?? missing("specialists"),
      maxKeys: numberAt(value, "max_keys", path, { min: 1, max: 100_000, integer: true }) ?? base?.maxKeys ?? DEFAULT_MAX_KEYS,
    };
  }
  return plans;
}
