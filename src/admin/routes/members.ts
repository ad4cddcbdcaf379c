import type { FastifyInstance } from "fastify";
import { listJson, memberJson } from "../../api/resources.js";
import { errors } from "../../errors.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** An account's members, whether each has accepted the invitation, and removing one. */
export function memberRoutes(app: FastifyInstance, { accounts, peopleStore, people }: AdminApiOptions): void {
  app.get<IdParams>("/accounts/:id/members", async (request) => {
    const { id } = await accounts.getAccount(request.params.id);
    return listJson((await peopleStore.listMembers(id)).map(memberJson));
  });

  // The keys the member created are revoked with them, unless ?keep_keys=true hands them to the account.
  app.delete<{ Params: { id: string; memberId: string }; Querystring: { keep_keys?: unknown } }>(
    "/accounts/:id/members/:memberId",
    async (request, reply) => {
      const keepKeys = request.query.keep_keys;
      if (keepKeys !== undefined && keepKeys !== "true" && keepKeys !== "false") throw errors.invalidParameter("keep_keys", "must be true or false.");
      await people.removeMember(operator(request), request.params.id, request.params.memberId, keepKeys === "true");
      return reply.code(204).send();
    },
  );
}
