import type { FastifyInstance, FastifyRequest } from "fastify";
import { errors } from "../errors.js";
import type { AccountService } from "../gate/accounts.js";
import { findPlan, type Plan } from "../gate/plans.js";
import { usageReport } from "../metering/usage-report.js";
import type { Account, ApiKeyRecord, Mode, Store } from "../store/store.js";
import { adminRequests } from "../api/schemas/admin.js";
import { parseBody } from "../schema/request-errors.js";
import type { People } from "../dashboard/people.js";
import { accountDetailRoutes } from "./account-detail-routes.js";
import { auditPageJson, auditRecordJson, parseAuditQuery, requestContext } from "./audit-query.js";
import { checkCsrf, readCookie, SESSION_COOKIE, setSecurityHeaders } from "../dashboard/web-security.js";

export interface AdminApiOptions {
  /** ALVEARE_ADMIN_TOKEN; without one the admin API does not exist (404). */
  token: string | undefined;
  accounts: AccountService;
  store: Store;
  plans: Readonly<Record<string, Plan>>;
  people: People;
}

const accountJson = (a: Account) => ({ id: a.id, name: a.name, plan: a.plan, status: a.status, created_at: a.createdAt });
const keyJson = (k: ApiKeyRecord) => ({
  id: k.id, account_id: k.accountId, name: k.name, mode: k.mode, prefix: k.prefix,
  created_at: k.createdAt, last_used_at: k.lastUsedAt, revoked_at: k.revokedAt,
});

const operator = (request: FastifyRequest) => requestContext(request, "operator");

const modeOf = (request: FastifyRequest): Mode => {
  const mode = (request.query as Record<string, string | undefined>).mode ?? "live";
  if (mode !== "live" && mode !== "test") throw errors.invalidParameter("mode", "must be live or test.");
  return mode;
};

/**
 * The operator's JSON API under /admin/api: the same operations as the CLI,
 * through the same AccountService. Scripts authenticate with the admin token as
 * a Bearer header; the dashboard's operator pages with the operator's session
 * cookie, where every state change also needs the session's CSRF token.
 */
export function adminApi(options: AdminApiOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    const { accounts, store, plans } = options;
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
      const given = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")?.[1];
      if (given === undefined) throw errors.missingApiKey();
      // The same per-address limit as the operator's sign-in: the bearer token is the same secret.
      await options.people.checkAdminToken(given, request.ip, request.id);
      await store.audit.record(operator(request), { action: "admin_token.used", accountId: null, target: `${request.method} ${request.routeOptions.url ?? "unknown route"}` });
    });

    app.get("/audit", async (request) => auditPageJson(await store.audit.query(parseAuditQuery(request.query))));
    app.get<{ Params: { id: string } }>("/audit/:id", async (request) => {
      const record = /^\d{1,15}$/.test(request.params.id) ? await store.audit.get(Number(request.params.id)) : undefined;
      if (record === undefined) throw errors.notFoundResource(`no audit record '${request.params.id}'`);
      return auditRecordJson(record);
    });

    /** An invitation link for a member of the account; the token travels in the URL fragment, which browsers never send to a server. */
    app.post<{ Params: { id: string } }>("/accounts/:id/invitations", async (request, reply) => {
      const { member, token } = await options.people.invite(operator(request), request.params.id, parseBody(adminRequests.inviteMember, request.body).email);
      return reply.code(201).send({ member_id: member.id, email: member.email, invite_path: `/dashboard/#invite=${token}` });
    });

    app.get("/accounts", async () => ({ object: "list", data: (await accounts.listAccounts()).map(accountJson) }));

    app.post("/accounts", async (request, reply) => {
      const body = parseBody(adminRequests.createAccount, request.body);
      const account = await accounts.createAccount(operator(request), body.name, body.plan);
      return reply.code(201).send(accountJson(account));
    });

    app.get<{ Params: { id: string } }>("/accounts/:id", async (request) =>
      accountJson(await accounts.getAccount(request.params.id)));

    app.patch<{ Params: { id: string } }>("/accounts/:id", async (request) => {
      const body = parseBody(adminRequests.updateAccount, request.body);
      let account: Account | undefined;
      if (body.plan !== undefined) account = await accounts.changePlan(operator(request), request.params.id, body.plan);
      if (body.status !== undefined) account = await accounts.setStatus(operator(request), request.params.id, body.status);
      if (account === undefined) throw errors.missingParameter("plan");
      return accountJson(account);
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/keys", async (request) => ({
      object: "list", data: (await accounts.listKeys(request.params.id)).map(keyJson),
    }));

    app.post<{ Params: { id: string } }>("/accounts/:id/keys", async (request, reply) => {
      const body = request.body === undefined ? {} : parseBody(adminRequests.createKey, request.body);
      const { record, key } = await accounts.createKey(operator(request), request.params.id, body.mode ?? "live", body.name);
      return reply.code(201).send({ ...keyJson(record), key });
    });

    app.post<{ Params: { id: string } }>("/keys/:id/revoke", async (request) => {
      await accounts.revokeKey(operator(request), request.params.id);
      return { id: request.params.id, revoked: true };
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/usage", async (request) => {
      const account = await accounts.getAccount(request.params.id);
      const plan = findPlan(plans, account.plan);
      if (plan === undefined) throw errors.internal();
      return usageReport(store, plan, account.id, modeOf(request));
    });

    accountDetailRoutes({ accounts, store })(app);
  };
}
