import type { FastifyInstance, FastifyRequest } from "fastify";
import { MODEL_PREFIX, type Model, type ModelList } from "../../api/types.js";
import { errors, withoutTrailingSlashHint } from "../../errors.js";
import type { AppOptions } from "../app.js";

export async function modelsRoute(app: FastifyInstance, options: AppOptions): Promise<void> {
  // Models are served from when this server started.
  const created = Math.floor(Date.now() / 1000);
  const model = (id: string): Model => ({ id: `${MODEL_PREFIX}${id}`, object: "model", created, owned_by: "alveare" });
  /** The models the caller's plan may call: what the list shows and the only ones a retrieve finds. */
  const visible = (request: FastifyRequest) =>
    options.specialists
      .list()
      .filter((s) => options.gate.allows(request.caller, s.id))
      .map((s) => model(s.id));

  app.get("/models", async (request): Promise<ModelList> => ({ object: "list", data: visible(request) }));

  app.get<{ Params: { model: string } }>("/models/:model", async (request): Promise<Model> => {
    const name = request.params.model;
    // GET /v1/models/ is the list asked for with a trailing slash, not a model named "".
    if (name === "") throw errors.notFound("GET", "/v1/models/", withoutTrailingSlashHint("/v1/models"));
    const found = visible(request).find((m) => m.id === name);
    if (found === undefined) throw errors.unknownModel(name);
    return found;
  });
}
