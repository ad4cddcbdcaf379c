import type { FastifyInstance } from "fastify";
import type { Health } from "../../api/types.js";

const startedAt = Date.now();

export async function healthRoute(app: FastifyInstance, options: { version: string }): Promise<void> {
  app.get("/health", async (): Promise<Health> => ({
    status: "ok",
    version: options.version,
    uptime_seconds: Math.floor((Date.now() - startedAt) / 1000),
  }));
}
