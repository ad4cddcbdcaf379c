import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError, errors } from "../errors.js";
import { bearerToken, withoutKeys } from "../gate/credentials.js";
import { checkCsrf, readSessionCookie, setSecurityHeaders } from "../dashboard/web-security.js";
import { accountRoutes } from "./routes/accounts.js";
import { operator, type AdminApiOptions } from "./routes/admin-context.js";
import { auditRoutes } from "./routes/audit.js";
import { invitationRoutes } from "./routes/invitations.js";
import { keyRoutes } from "./routes/keys.js";
import { memberRoutes } from "./routes/members.js";
import { planRoutes } from "./routes/plans.js";
import { usageRoutes } from "./routes/usage.js";

/** The admin API wants the operator's admin token, not an account's API key: the answer says so. */
const missingAdminToken = (): ApiError =>
  new ApiError(
    401,
    "authentication_error",
    "missing_admin_token",
    "No admin token provided. Send the operator's admin token (ALVEARE_ADMIN_TOKEN) as 'Authorization: Bearer TOKEN', or sign in to the dashboard as the operator.",
  );

// A key pasted into the path is not echoed whole, as on every other 404.
const notFound = (request: FastifyRequest, hint?: string): ApiError =>
  errors.notFound(request.method, withoutKeys(request.url.split("?")[0] ?? "/"), hint);

/** Said on the admin API's own routes while it is off: a bare "Unknown route" sent operators looking for a typo. */
const ADMIN_API_OFF = "the admin API is off on this server until the operator sets ALVEARE_ADMIN_TOKEN (32 characters or more) and restarts it";

/** The admin API's resources, one file each under routes/. */
const RESOURCES = [accountRoutes, keyRoutes, invitationRoutes, memberRoutes, usageRoutes, auditRoutes, planRoutes];

/**
 * The operator's JSON API under /admin/api: the same operations as the CLI,
 * through the same AccountService. Scripts authenticate with the admin token as
 * a Bearer header; the dashboard's operator pages with the operator's session
 * cookie, where every state change also needs the session's CSRF token.
 */
export function adminApi(options: AdminApiOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    app.addHook("onRequest", async (request, reply) => {
      // Every answer, 404s included, carries the security headers and is never cached (it may hold a new key's secret).
      setSecurityHeaders(reply);
      reply.header("cache-control", "no-store");
      if (request.is404) throw notFound(request);
      if (options.token === undefined || options.token === "") throw notFound(request, ADMIN_API_OFF);
      options.checkHost?.(request);
      if (request.headers.authorization === undefined) {
        const session = await options.people.session(readSessionCookie(request));
        if (session?.admin === true) {
          checkCsrf(request, session);
          return;
        }
      }
      const given = bearerToken(request.headers.authorization);
      if (given === undefined) throw missingAdminToken();
      // The same per-address limit as the operator's sign-in: the bearer token is the same secret.
      await options.people.checkAdminToken(given, request.ip, request.id);
      await options.audit.record(operator(request), {
        action: "admin_token.used",
        accountId: null,
        target: `${request.method} ${request.routeOptions.url ?? "unknown route"}`,
      });
    });
    for (const register of RESOURCES) register(app, options);
    // Unknown paths under /admin/api are answered here, after the hook above set their headers (the server-wide
    // 404 runs none of this scope's hooks); they are 404 with or without a token, as before.
    app.setNotFoundHandler((request) => {
      throw notFound(request);
    });
  };
}
