import type { FastifyInstance } from "fastify";
import { MODEL_PREFIX, type ModelList } from "../../api/types.js";
import type { AppOptions } from "../app.js";

export async function modelsRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  // Models are served from when this server started.
  const created = Math.floor(Date.now() / 1000);
  app.get("/models", async (request): Promise<ModelList> => ({
    object: "list",
    data: options.specialists
      .list()
      .filter((s) => options.gate.allows(request.caller, s.id))
      .map((s) => ({ id: `${MODEL_PREFIX}${s.id}`, object: "model", created, owned_by: "alveare" })),
  }));
}
