import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError, errors } from "../errors.js";
import { AccountError, type AccountService } from "../gate/accounts.js";
import type { Plan } from "../gate/plans.js";
import { usageReport } from "../metering/usage-report.js";
import type { Account, ApiKeyRecord, Mode, Store } from "../store/store.js";
import { bodyObject, requiredString } from "../server/validate.js";
import type { People } from "../dashboard/people.js";
import { accountDetailRoutes } from "./account-detail-routes.js";
import { checkCsrf, readCookie, sameSecret, SESSION_COOKIE, setSecurityHeaders } from "../dashboard/web-security.js";

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

function accountError(error: unknown): never {
  if (error instanceof AccountError) {
    if (error.notFound) throw new ApiError(404, "invalid_request_error", "not_found", error.message);
    throw errors.invalidParameter("body", error.message);
  }
  throw error;
}

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
      if (!sameSecret(given, options.token)) throw errors.invalidAdminToken();
    });

    /** An invitation link for a member of the account; the token travels in the URL fragment, which browsers never send to a server. */
    app.post<{ Params: { id: string } }>("/accounts/:id/invitations", async (request, reply) => {
      const { member, token } = await options.people.invite(request.params.id, requiredString(bodyObject(request.body), "email"));
      return reply.code(201).send({ member_id: member.id, email: member.email, invite_path: `/dashboard/#invite=${token}` });
    });

    app.get("/accounts", async () => ({ object: "list", data: (await accounts.listAccounts()).map(accountJson) }));

    app.post("/accounts", async (request, reply) => {
      const body = bodyObject(request.body);
      const account = await accounts.createAccount(requiredString(body, "name"), requiredString(body, "plan")).catch(accountError);
      return reply.code(201).send(accountJson(account));
    });

    app.get<{ Params: { id: string } }>("/accounts/:id", async (request) =>
      accountJson(await accounts.getAccount(request.params.id).catch(accountError)));

    app.patch<{ Params: { id: string } }>("/accounts/:id", async (request) => {
      const body = bodyObject(request.body);
      let account: Account | undefined;
      if (body.plan !== undefined) account = await accounts.changePlan(request.params.id, requiredString(body, "plan")).catch(accountError);
      if (body.status !== undefined) {
        const status = requiredString(body, "status");
        if (status !== "active" && status !== "suspended") throw errors.invalidParameter("status", 'must be "active" or "suspended".');
        account = await accounts.setStatus(request.params.id, status).catch(accountError);
      }
      if (account === undefined) throw errors.missingParameter("plan");
      return accountJson(account);
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/keys", async (request) => ({
      object: "list", data: (await accounts.listKeys(request.params.id).catch(accountError)).map(keyJson),
    }));

    app.post<{ Params: { id: string } }>("/accounts/:id/keys", async (request, reply) => {
      const body = request.body === undefined ? {} : bodyObject(request.body);
      const mode = body.mode === undefined ? "live" : requiredString(body, "mode");
      if (mode !== "live" && mode !== "test") throw errors.invalidParameter("mode", 'must be "live" or "test".');
      const name = body.name === undefined ? undefined : requiredString(body, "name");
      const { record, key } = await accounts.createKey(request.params.id, mode, name).catch(accountError);
      return reply.code(201).send({ ...keyJson(record), key });
    });

    app.post<{ Params: { id: string } }>("/keys/:id/revoke", async (request) => {
      await accounts.revokeKey(request.params.id).catch(accountError);
      return { id: request.params.id, revoked: true };
    });

    app.get<{ Params: { id: string } }>("/accounts/:id/usage", async (request) => {
      const account = await accounts.getAccount(request.params.id).catch(accountError);
      const plan = plans[account.plan];
      if (plan === undefined) throw errors.internal();
      return usageReport(store, plan, account.id, modeOf(request));
    });

    accountDetailRoutes({ accounts, store })(app);
  };
}
