import type { FastifyInstance } from "fastify";
import { invitationJson } from "../../api/resources.js";
import { adminRequests } from "../../api/schemas/admin.js";
import { parseBody } from "../../schema/request-errors.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** Inviting a member to an account: the answer carries the one-time invitation link. */
export function invitationRoutes(app: FastifyInstance, { people }: AdminApiOptions): void {
  app.post<IdParams>("/accounts/:id/invitations", async (request, reply) => {
    const invited = await people.invite(operator(request), request.params.id, parseBody(adminRequests.inviteMember, request.body).email);
    return reply.code(201).send(invitationJson(invited));
  });
}
