import type { FastifyInstance } from "fastify";
import { listJson, memberJson } from "../../api/resources.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** An account's members, whether each has accepted the invitation, and removing one. */
export function memberRoutes(app: FastifyInstance, { accounts, peopleStore, people }: AdminApiOptions): void {
  app.get<IdParams>("/accounts/:id/members", async (request) => {
    const { id } = await accounts.getAccount(request.params.id);
    return listJson((await peopleStore.listMembers(id)).map(memberJson));
  });

  app.delete<{ Params: { id: string; memberId: string } }>("/accounts/:id/members/:memberId", async (request, reply) => {
    await people.removeMember(operator(request), request.params.id, request.params.memberId);
    return reply.code(204).send();
  });
}
