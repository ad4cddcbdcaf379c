import { loadConfig, type ServeFlags } from "../config/config.js";
import { createLogger } from "../logger.js";
import { startServer } from "../server/server.js";

export async function serve(flags: ServeFlags): Promise<void> {
  const config = loadConfig(flags);
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, { logger });
  logger.info({ url: server.url, specialists: server.registry.list().map((s) => `${s.id}@${s.engine.name}`) }, "alveare is serving");
  let signals = 0;
  const stop = (signal: string): void => {
    signals++;
    if (signals > 1) process.exit(130); // A second Ctrl-C means now.
    logger.info({ signal }, "shutting down: finishing in-flight requests");
    server.close().then(
      () => { logger.flush(); process.exit(0); },
      (error: unknown) => { logger.error({ err: error }, "shutdown failed"); logger.flush(); process.exit(1); },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}
