import type { FastifyInstance, FastifyRequest } from "fastify";
import { errors } from "../errors.js";
import type { AccountService } from "../accounts/accounts.js";
import { bearerToken, requestedMode } from "../gate/credentials.js";
import { findPlan, type Plan } from "../gate/plans.js";
import { usageReport } from "../metering/usage-report.js";
import type { Account, LedgerStore, Mode, PeopleStore } from "../store/store.js";
import { accountJson, createdKeyJson, invitationJson, keyJson } from "../api/resources.js";
import { adminRequests } from "../api/schemas/admin.js";
import { parseBody } from "../schema/request-errors.js";
import type { People } from "../accounts/people.js";
import { accountDetailRoutes } from "./account-detail-routes.js";
import type { AuditLog } from "../store/audit-log.js";
import { auditPageJson, auditRecordJson, parseAuditQuery, requestContext } from "./audit-query.js";
import { checkCsrf, readCookie, SESSION_COOKIE, setSecurityHeaders } from "../dashboard/web-security.js";

interface AdminApiOptions {
  /** ALVEARE_ADMIN_TOKEN; without one the admin API does not exist (404). */
  token: string | undefined;
  accounts: AccountService;
  ledger: LedgerStore;
  peopleStore: PeopleStore;
  plans: Readonly<Record<string, Plan>>;
  people: People;
  audit: AuditLog;
}

const operator = (request: FastifyRequest) => requestContext(request, "operator");

const modeOf = (request: FastifyRequest): Mode => requestedMode((request.query as Record<string, string | undefined>).mode);

/**
 * The operator's JSON API under /admin/api: the same operations as the CLI,
 * through the same AccountService. Scripts authenticate with the admin token as
 * a Bearer header; the dashboard's operator pages with the operator's session
 * cookie, where every state change also needs the session's CSRF token.
 */
export function adminApi(options: AdminApiOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    const { accounts, ledger, plans } = options;
    app.addHook("onRequest", async (request, reply) => {
      if (options.token === undefined || options.token === "") throw errors.notFound(request.method, request.url.split("?")[0] ?? "/");
      setSecurityHeaders(reply);
      if (request.headers.authorization === undefined) {
        const session = await options.people.session(readCookie(request, SESSION_COOKIE));
        if (session?.admin === true) {
          checkCsrf(request, session);
          return;
        }
      }
      const given = bearerToken(request.headers.authorization);
      if (given === undefined) throw errors.missingApiKey();
      // The same per-address limit as the operator's sign-in: the bearer token is the same secret.
      await options.people.checkAdminToken(given, request.ip, request.id);
      await options.audit.record(operator(request), {
        action: "admin_token.used",
        accountId: null,
        target: `${request.method} ${request.routeOptions.url ?? "unknown route"}`,
      });
    });

    app.get("/audit", async (request) => auditPageJson(await options.audit.query(parseAuditQuery(request.query))));
    app.get<{ Params: { id: string } }>("/audit/:id", async (request) => {
      const record = /^\d{1,15}$/.test(request.params.id) ? await options.audit.get(Number(request.params.id)) : undefined;
      if (record === undefined) throw errors.notFoundResource(`no audit record '${request.params.id}'`);
      return auditRecordJson(record);
    });

    app.post<{ Params: { id: string } }>("/accounts/:id/invitations", async (request, reply) => {
      const invited = await options.people.invite(operator(request), request.params.id, parseBody(adminRequests.inviteMember, request.body).email);
      return reply.code(201).send(invitationJson(invited));
    });

    app.get("/accounts", async () => ({ object: "list", data: (await accounts.listAccounts()).map(accountJson) }));

    app.post("/accounts", async (request, reply) => {
      const body = parseBody(adminRequests.createAccount, request.body);
      const account = await accounts.createAccount(operator(request), body.name, body.plan);
      return reply.code(201).send(accountJson(account));
    });

    app.get<{ Params: { id: string } }>("/accounts/:id", async (request) => accountJson(await accounts.getAccount(request.params.id)));

    app.patch<{ Params: { id: string } }>("/accounts/:id", async (request) => {
      const body = parseBody(adminRequests.updateAccount, request.body);
      let account: Account | undefined;
      if (body.plan !== undefined) account = await accounts.changePlan(operator(request), request.params.id, body.plan);
      if (body.status !== undefined) account = await accounts.setStatus(operator(request), request.params.id, body.status);
      if (account === undefined) throw errors.missingParameter("plan");
      return accountJson(account);
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/keys", async (request) => ({
      object: "list",
      data: (await accounts.listKeys(request.params.id)).map(keyJson),
    }));

    app.post<{ Params: { id: string } }>("/accounts/:id/keys", async (request, reply) => {
      const body = request.body === undefined ? {} : parseBody(adminRequests.createKey, request.body);
      return reply.code(201).send(createdKeyJson(await accounts.createKey(operator(request), request.params.id, body.mode ?? "live", body.name)));
    });

    app.post<{ Params: { id: string } }>("/keys/:id/revoke", async (request) => {
      await accounts.revokeKey(operator(request), request.params.id);
      return { id: request.params.id, revoked: true };
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/usage", async (request) => {
      const account = await accounts.getAccount(request.params.id);
      const plan = findPlan(plans, account.plan);
      if (plan === undefined) throw errors.internal();
      return usageReport(ledger, plan, account.id, modeOf(request));
    });

    accountDetailRoutes({ accounts, ledger, peopleStore: options.peopleStore })(app);
  };
}
