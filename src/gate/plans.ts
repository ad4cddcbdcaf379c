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
}

export const DEFAULT_PLANS: Readonly<Record<string, Plan>> = {
  solo: { name: "solo", requestsPerWindow: 20, windowMs: 60_000, requestsPerMonth: 10_000, specialists: ["classify", "summarise", "extract"] },
  starter: { name: "starter", requestsPerWindow: 100, windowMs: 60_000, requestsPerMonth: 100_000, specialists: ["classify", "summarise", "extract", "qa", "chat"] },
  professional: { name: "professional", requestsPerWindow: 500, windowMs: 60_000, requestsPerMonth: 500_000, specialists: "*" },
  scale: { name: "scale", requestsPerWindow: 2_000, windowMs: 60_000, requestsPerMonth: 2_000_000, specialists: "*" },
};

export const planAllows = (plan: Plan, specialistId: string): boolean =>
  plan.specialists === "*" || plan.specialists.includes(specialistId);

/**
 * The config file's `plans` table over the defaults: a known plan changes field
 * by field, a new name adds a plan (all fields required).
 */
export function parsePlans(raw: unknown): Record<string, Plan> {
  const plans: Record<string, Plan> = { ...DEFAULT_PLANS };
  if (raw === undefined) return plans;
  if (!isFields(raw)) throw new ConfigError("plans", "must be an object keyed by plan name");
  for (const [name, value] of Object.entries(raw)) {
    const path = `plans.${name}.`;
    if (!/^[a-z0-9][a-z0-9_-]{0,40}$/.test(name)) throw new ConfigError(`plans.${name}`, "name must be lowercase letters, digits, '-' or '_'");
    if (!isFields(value)) throw new ConfigError(`plans.${name}`, "must be an object");
    onlyKeys(value, ["requests_per_minute", "requests_per_month", "window_seconds", "specialists"], path);
    const base = plans[name];
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
    };
  }
  return plans;
}
