import type { FastifyInstance } from "fastify";
import { createdKeyJson, keyJson, listJson, revokedKeyJson } from "../../api/resources.js";
import { adminRequests } from "../../api/schemas/admin.js";
import { parseBody } from "../../schema/request-errors.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** An account's keys, and revoking any key by its id. */
export function keyRoutes(app: FastifyInstance, { accounts }: AdminApiOptions): void {
  app.get<IdParams>("/accounts/:id/keys", async (request) => listJson((await accounts.listKeys(request.params.id)).map(keyJson)));

  app.post<IdParams>("/accounts/:id/keys", async (request, reply) => {
    const body = request.body === undefined ? {} : parseBody(adminRequests.createKey, request.body);
    return reply.code(201).send(createdKeyJson(await accounts.createKey(operator(request), request.params.id, body.mode ?? "live", body.name)));
  });

  app.post<IdParams>("/keys/:id/revoke", async (request) => {
    await accounts.revokeKey(operator(request), request.params.id);
    return revokedKeyJson(request.params.id);
  });
}
