import type { FastifyInstance } from "fastify";
import { listJson, memberJson } from "../../api/resources.js";
import type { AdminApiOptions, IdParams } from "./admin-context.js";

/** An account's members, and whether each has accepted the invitation. */
export function memberRoutes(app: FastifyInstance, { accounts, peopleStore }: AdminApiOptions): void {
  app.get<IdParams>("/accounts/:id/members", async (request) => {
    const { id } = await accounts.getAccount(request.params.id);
    return listJson((await peopleStore.listMembers(id)).map(memberJson));
  });
}
