import type { FastifyInstance } from "fastify";
import { accountJson } from "../../api/resources.js";
import { adminRequests } from "../../api/schemas/admin.js";
import { errors } from "../../errors.js";
import { parseBody } from "../../schema/request-errors.js";
import type { Account } from "../../store/store.js";
import { operator, type AdminApiOptions, type IdParams } from "./admin-context.js";

/** /accounts and /accounts/:id: list, create, read, change plan or status. */
export function accountRoutes(app: FastifyInstance, { accounts }: AdminApiOptions): void {
  app.get("/accounts", async () => ({ object: "list", data: (await accounts.listAccounts()).map(accountJson) }));

  app.post("/accounts", async (request, reply) => {
    const body = parseBody(adminRequests.createAccount, request.body);
    const account = await accounts.createAccount(operator(request), body.name, body.plan);
    return reply.code(201).send(accountJson(account));
  });

  app.get<IdParams>("/accounts/:id", async (request) => accountJson(await accounts.getAccount(request.params.id)));

  app.patch<IdParams>("/accounts/:id", async (request) => {
    const body = parseBody(adminRequests.updateAccount, request.body);
    let account: Account | undefined;
    if (body.plan !== undefined) account = await accounts.changePlan(operator(request), request.params.id, body.plan);
    if (body.status !== undefined) account = await accounts.setStatus(operator(request), request.params.id, body.status);
    if (account === undefined) throw errors.missingOneOf(["plan", "status"]);
    return accountJson(account);
  });
}
