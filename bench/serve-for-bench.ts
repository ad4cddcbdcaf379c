/**
 * Starts a server for the gate benchmark: `gate` uses the account gate (auth,
 * plan, window limit, quota, metering on SQLite), `open` the same server with
 * the gate switched off. Args: port upstreamPort dataDir gate|open
 */
import { loadConfig } from "../src/config/config.js";
import { openGate } from "../src/gate/gate.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/server/server.js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [port, upstreamPort, dataDir, mode] = process.argv.slice(2);
const configPath = join(dataDir!, "bench-config.json");
const off = { enabled: false };
writeFileSync(
  configPath,
  JSON.stringify({
    port: Number(port),
    data_dir: dataDir,
    specialists: {
      classify: { remote: { base_url: `http://127.0.0.1:${upstreamPort}/v1`, model: "instant" } },
      summarise: off,
      extract: off,
      qa: off,
      chat: off,
      code: off,
      embed: off,
    },
    plans: { scale: { requests_per_minute: 10_000_000, requests_per_month: 1_000_000_000 } },
  }),
);
// Metrics off unless the benchmark asks (metrics-overhead passes a port); OTEL_* are read from the environment.
// The shared mode's variables pass through, so shared-mode.ts can run the same server on PostgreSQL and Redis
// (and the admin token, with which it makes more benchmark accounts).
const shared = Object.fromEntries(
  ["ALVEARE_DATABASE_URL", "ALVEARE_REDIS_URL", "ALVEARE_REDIS_PREFIX", "ALVEARE_ADMIN_TOKEN"].flatMap((name) =>
    process.env[name] ? [[name, process.env[name]!]] : [],
  ),
);
const config = loadConfig({ config: configPath }, { ALVEARE_METRICS_PORT: process.env.ALVEARE_METRICS_PORT ?? "0", ...shared });
const server = await startServer(config, { logger: createLogger("info"), gate: mode === "open" ? openGate : undefined });
process.on("SIGTERM", () => void server.close(1000).then(() => process.exit(0)));
process.stderr.write("ready\n");
