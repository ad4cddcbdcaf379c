import { ConfigError } from "../config/config-error.js";

/** Where metrics are served and how long a stopping node lets running requests finish. */
export interface ObservabilitySettings {
  /** ALVEARE_METRICS_PORT: the Prometheus listener's port; 0 turns it off. */
  metricsPort: number;
  /** ALVEARE_METRICS_HOST: loopback by default, so metrics never reach the public network unasked. */
  metricsHost: string;
  /** ALVEARE_DRAIN_SECONDS: how long running requests may take after SIGTERM before they are cut. */
  drainSeconds: number;
}

export const DEFAULT_METRICS_PORT = 9464;
export const DEFAULT_DRAIN_SECONDS = 30;

/** Hand-built configs (benchmarks, embedders) get no metrics listener unless they ask. */
export const OBSERVABILITY_OFF: ObservabilitySettings = { metricsPort: 0, metricsHost: "127.0.0.1", drainSeconds: DEFAULT_DRAIN_SECONDS };

function intFrom(value: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(name, `must be an integer between ${min} and ${max}, got '${value}'`);
  return n;
}

export function observabilityFrom(env: Readonly<Record<string, string | undefined>>): ObservabilitySettings {
  return {
    metricsPort: intFrom(env.ALVEARE_METRICS_PORT, "ALVEARE_METRICS_PORT", 0, 65535, DEFAULT_METRICS_PORT),
    metricsHost: env.ALVEARE_METRICS_HOST || "127.0.0.1",
    drainSeconds: intFrom(env.ALVEARE_DRAIN_SECONDS, "ALVEARE_DRAIN_SECONDS", 0, 86_400, DEFAULT_DRAIN_SECONDS),
  };
}
