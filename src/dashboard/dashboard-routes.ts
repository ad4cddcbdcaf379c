import { readFile } from "node:fs/promises";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ApiError, errors } from "../errors.js";
import type { AccountService } from "../accounts/accounts.js";
import { findPlan, planAllows, type Plan } from "../gate/plans.js";
import { requestedPeriod } from "../metering/billing-period.js";
import { usageReport } from "../metering/usage-report.js";
import type { SpecialistDefinition } from "../specialists/specialist.js";
import type { LedgerStore, Mode, Session } from "../store/store.js";
import { accountJson, createdKeyJson, keyJson } from "../api/resources.js";
import { dashboardRequests } from "../api/schemas/dashboard.js";
import { parseBody } from "../schema/request-errors.js";
import type { AuditLog } from "../store/audit-log.js";
import type { People } from "../accounts/people.js";
import { auditPageJson, auditRecordJson, parseAuditQuery, requestContext } from "../admin/audit-query.js";
import { checkCsrf, checkSameOrigin, dashboardResponseHeaders, notSignedIn, readCookie, SESSION_COOKIE, setSessionCookie } from "./web-security.js";

interface DashboardOptions {
  people: People;
  accounts: AccountService;
  ledger: LedgerStore;
  audit: AuditLog;
  plans: Readonly<Record<string, Plan>>;
  specialists: readonly SpecialistDefinition[];
}

const ROOT = new URL("../../../", import.meta.url);
/** A Map, so names like "constructor" or "__proto__" are simply not found. */
const ASSETS: ReadonlyMap<string, { file: URL; type: string }> = new Map([
  ["app.js", { file: new URL("dist/dashboard/app.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["styles.css", { file: new URL("dashboard/public/styles.css", ROOT), type: "text/css; charset=utf-8" }],
  ["dom.js", { file: new URL("dist/dashboard/dom.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["charts.js", { file: new URL("dist/dashboard/charts.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["member.js", { file: new URL("dist/dashboard/member.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["operator.js", { file: new URL("dist/dashboard/operator.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["audit.js", { file: new URL("dist/dashboard/audit.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["chart.umd.min.js", { file: new URL("dist/dashboard/vendor/chart.umd.min.js", ROOT), type: "text/javascript; charset=utf-8" }],
]);
const INDEX = new URL("dashboard/public/index.html", ROOT);

/** The member's session, its CSRF token checked for state changes; 401 without one. */
async function memberSession(people: People, request: FastifyRequest): Promise<Session & { memberId: string }> {
  const session = await people.session(readCookie(request, SESSION_COOKIE));
  if (session === undefined || session.memberId === null) throw notSignedIn();
  checkCsrf(request, session);
  return session as Session & { memberId: string };
}

/**
 * The dashboard: a static page and the JSON API it calls under /dashboard/api.
 * Members see and change only their own account; the operator's pages call
 * the admin API with the admin session cookie.
 */
export function dashboardRoutes(options: DashboardOptions) {
  const { people, accounts, ledger, plans, audit } = options;
  const accountOf = async (session: Session & { memberId: string }) => {
    const member = await people.member(session.memberId);
    if (member === undefined) throw notSignedIn();
    return { member, account: await accounts.getAccount(member.accountId) };
  };
  const signedIn = (request: FastifyRequest, reply: FastifyReply, token: string, session: Session) => {
    setSessionCookie(request, reply, token, Math.floor((Date.parse(session.expiresAt) - Date.now()) / 1000));
    return { csrf_token: session.csrfToken, kind: session.admin ? "operator" : "member" };
  };

  return async (app: FastifyInstance): Promise<void> => {
    app.addHook("onRequest", dashboardResponseHeaders);

    app.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(await readFile(INDEX)));
    app.get<{ Params: { name: string } }>("/assets/:name", async (request, reply) => {
      const asset = ASSETS.get(request.params.name);
      if (asset === undefined) throw errors.notFound("GET", request.url.split("?")[0] ?? "/");
      return reply.type(asset.type).send(await readFile(asset.file));
    });

    app.post("/api/login", async (request, reply) => {
      checkSameOrigin(request);
      const body = parseBody(dashboardRequests.signIn, request.body);
      const { token, session } = await people.signIn(body.email, body.password, request.ip, request.id);
      return signedIn(request, reply, token, session);
    });

    app.post("/api/admin-login", async (request, reply) => {
      checkSameOrigin(request);
      const { token, session } = await people.signInOperator(parseBody(dashboardRequests.operatorSignIn, request.body).token, request.ip, request.id);
      return signedIn(request, reply, token, session);
    });

    app.post("/api/invitations/accept", async (request, reply) => {
      checkSameOrigin(request);
      const body = parseBody(dashboardRequests.acceptInvitation, request.body);
      const { token, session } = await people.acceptInvitation(body.token, body.password, request.ip, request.id);
      return signedIn(request, reply, token, session);
    });

    app.post("/api/logout", async (request, reply) => {
      const token = readCookie(request, SESSION_COOKIE);
      const session = await people.session(token);
      if (session !== undefined && token !== undefined) {
        checkCsrf(request, session);
        await people.signOut(token);
      }
      setSessionCookie(request, reply, "", 0);
      return { signed_out: true };
    });

    app.get("/api/session", async (request) => {
      const session = await people.session(readCookie(request, SESSION_COOKIE));
      if (session === undefined) throw notSignedIn();
      if (session.admin) return { kind: "operator", csrf_token: session.csrfToken };
      const { member, account } = await accountOf(session as Session & { memberId: string });
      return { kind: "member", email: member.email, account: accountJson(account), csrf_token: session.csrfToken };
    });

    app.get("/api/keys", async (request) => {
      const { account } = await accountOf(await memberSession(people, request));
      const keys = await accounts.listKeys(account.id);
      return { object: "list", data: keys.map(keyJson) };
    });

    app.post("/api/keys", async (request, reply) => {
      const { member, account } = await accountOf(await memberSession(people, request));
      const body = parseBody(dashboardRequests.createKey, request.body);
      const name = body.name?.trim() || undefined;
      return reply
        .code(201)
        .send(createdKeyJson(await accounts.createKey(requestContext(request, `member:${member.email}`), account.id, body.mode, name)));
    });

    app.post<{ Params: { id: string } }>("/api/keys/:id/revoke", async (request) => {
      const { member, account } = await accountOf(await memberSession(people, request));
      // Another account's key is answered exactly like a missing one.
      const own = (await accounts.listKeys(account.id)).some((k) => k.id === request.params.id);
      if (!own) throw new ApiError(404, "invalid_request_error", "not_found", `no key '${request.params.id}'`);
      await accounts.revokeKey(requestContext(request, `member:${member.email}`), request.params.id);
      return { id: request.params.id, revoked: true };
    });

    // A member reads only the records of their own account; any other account's are answered as missing.
    app.get("/api/audit", async (request) => {
      const { account } = await accountOf(await memberSession(people, request));
      const query = parseAuditQuery(request.query);
      if (query.accountId !== undefined && query.accountId !== account.id) throw errors.notFoundResource(`no account '${query.accountId}'`);
      return auditPageJson(await audit.query({ ...query, accountId: account.id }));
    });

    app.get<{ Params: { id: string } }>("/api/audit/:id", async (request) => {
      const { account } = await accountOf(await memberSession(people, request));
      const record = /^\d{1,15}$/.test(request.params.id) ? await audit.get(Number(request.params.id)) : undefined;
      if (record === undefined || record.accountId !== account.id) throw errors.notFoundResource(`no audit record '${request.params.id}'`);
      return auditRecordJson(record);
    });

    app.get("/api/usage", async (request) => {
      const { account } = await accountOf(await memberSession(people, request));
      const query = request.query as Record<string, string | undefined>;
      const period = requestedPeriod(query.period);
      const plan = findPlan(plans, account.plan);
      if (plan === undefined) throw errors.internal();
      const report = async (mode: Mode) => ({
        ...(await usageReport(ledger, plan, account.id, mode, period)),
        daily: await ledger.dailyRequests(account.id, mode, period.key),
      });
      return { period: period.key, live: await report("live"), test: await report("test") };
    });

    app.get("/api/plan", async (request) => {
      const { account } = await accountOf(await memberSession(people, request));
      const plan = findPlan(plans, account.plan);
      if (plan === undefined) throw errors.internal();
      return {
        name: plan.name,
        requests_per_window: plan.requestsPerWindow,
        window_seconds: plan.windowMs / 1000,
        requests_per_month: plan.requestsPerMonth,
        specialists: options.specialists.filter((s) => planAllows(plan, s.id)).map((s) => ({ id: s.id, description: s.description })),
      };
    });
  };
}
