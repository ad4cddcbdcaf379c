import type { FastifyInstance } from "fastify";
import { requestContext } from "../../admin/audit-query.js";
import { createdKeyJson, keyJson, listJson, revokedKeyJson } from "../../api/resources.js";
import { dashboardRequests } from "../../api/schemas/dashboard.js";
import { parseBody } from "../../schema/request-errors.js";
import { signedInMember, type DashboardOptions } from "./member-context.js";

/** The member's own account's keys: list, create, revoke. */
export function keyRoutes(app: FastifyInstance, options: DashboardOptions): void {
  const { accounts } = options;

  app.get("/api/keys", async (request) => {
    const { account } = await signedInMember(options, request);
    const [keys, members] = await Promise.all([accounts.listKeys(account.id), options.stores.people.listMembers(account.id)]);
    // Who made each key, by e-mail as the page shows it: null for the account's own keys and for a removed member's.
    const emails = new Map(members.map((m) => [m.id, m.email]));
    return listJson(keys.map((k) => ({ ...keyJson(k), created_by_email: (k.createdBy !== null && emails.get(k.createdBy)) || null })));
  });

  app.post("/api/keys", async (request, reply) => {
    const { member, account } = await signedInMember(options, request);
    const body = parseBody(dashboardRequests.createKey, request.body);
    const name = body.name?.trim() || undefined;
    return reply
      .code(201)
      .send(createdKeyJson(await accounts.createKey(requestContext(request, `member:${member.email}`), account.id, body.mode, name, member.id)));
  });

  app.post<{ Params: { id: string } }>("/api/keys/:id/revoke", async (request) => {
    const { member, account } = await signedInMember(options, request);
    // Another account's key is answered exactly like a missing one (one row read, not the account's whole list).
    await accounts.revokeKey(requestContext(request, `member:${member.email}`), request.params.id, account.id);
    return revokedKeyJson(request.params.id);
  });
}
