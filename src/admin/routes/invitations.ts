import type { FastifyInstance } from "fastify";
import { invitationJson } from "../../api/resources.js";
import { adminRequests } from "../../api/schemas/admin.js";
import { parseBody } from "../../schema/request-errors.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** Inviting a member to an account: the answer carries the one-time invitation link. */
export function invitationRoutes(app: FastifyInstance, { people, publicUrl }: AdminApiOptions): void {
  app.post<IdParams>("/accounts/:id/invitations", async (request, reply) => {
    const invited = await people.invite(operator(request), request.params.id, parseBody(adminRequests.inviteMember, request.body).email);
    const invitation = invitationJson(invited);
    // The whole link, as `alveare members invite --json` gives it: a script sends it on as it is.
    // Without ALVEARE_PUBLIC_URL, where the request came to; a request without a Host (HTTP/1.0) names no place.
    const base = publicUrl ?? (request.host === "" ? undefined : `${request.protocol}://${request.host}`);
    return reply.code(201).send(base === undefined ? invitation : { ...invitation, url: `${base}${invitation.invite_path}` });
  });
}
