import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { accountJson } from "../../api/resources.js";
import { dashboardRequests } from "../../api/schemas/dashboard.js";
import type { CompiledSchema } from "../../schema/compile.js";
import { parseBody } from "../../schema/request-errors.js";
import type { Session } from "../../store/store.js";
import { checkCsrf, checkSameOrigin, readSessionCookie, setSessionCookie } from "../web-security.js";
import { memberAccount, type DashboardOptions, type MemberSession } from "./member-context.js";

type SignedIn = { token: string; session: Session };

/** Which sign-ins exist; signing in (member, operator, or by accepting an invitation), signing out, and the current session. */
export function sessionRoutes(app: FastifyInstance, options: DashboardOptions): void {
  const { people } = options;

  app.get("/api/sign-in-options", async () => ({ operator_sign_in: options.operatorSignIn }));
  const signedIn = (request: FastifyRequest, reply: FastifyReply, token: string, session: Session) => {
    setSessionCookie(request, reply, token, Math.floor((Date.parse(session.expiresAt) - Date.now()) / 1000));
    return { csrf_token: session.csrfToken, kind: session.admin ? "operator" : "member" };
  };

  /** A same-origin POST whose body starts a session: the cookie is set and the CSRF token given. */
  const startsSession = <T>(path: string, schema: CompiledSchema<T>, start: (body: T, request: FastifyRequest) => Promise<SignedIn>) =>
    app.post(path, async (request, reply) => {
      checkSameOrigin(request);
      const { token, session } = await start(parseBody(schema, request.body), request);
      // The session this browser held before (another person's on a shared computer, or its own) ends here: its
      // cookie is replaced, and a copy of it taken earlier went on working until it expired, up to 12 hours on.
      const previous = readSessionCookie(request);
      if (previous !== undefined && previous.length > 0) await people.signOut(previous);
      return signedIn(request, reply, token, session);
    });

  startsSession("/api/login", dashboardRequests.signIn, (body, request) => people.signIn(body.email, body.password, request.ip, request.id));
  startsSession("/api/admin-login", dashboardRequests.operatorSignIn, (body, request) => people.signInOperator(body.token, request.ip, request.id));
  startsSession("/api/invitations/accept", dashboardRequests.acceptInvitation, (body, request) =>
    people.acceptInvitation(body.token, body.password, request.ip, request.id),
  );

  app.post("/api/logout", async (request, reply) => {
    const token = readSessionCookie(request);
    const session = await people.session(token);
    if (session !== undefined && token !== undefined) {
      checkCsrf(request, session);
      await people.signOut(token);
    }
    setSessionCookie(request, reply, "", 0);
    return { signed_out: true };
  });

  app.get("/api/session", async (request) => {
    // It answers the CSRF token: only to the dashboard's own pages, as every other member read.
    checkSameOrigin(request);
    const session = await people.session(readSessionCookie(request));
    // "Who is signed in?" has "no one" for an answer, not a 401 every browser console prints as an error on each
    // signed-out page load. It gives nothing away: every other route still answers 401 without a session.
    if (session === undefined) return { kind: "signed_out" };
    if (session.admin) return { kind: "operator", csrf_token: session.csrfToken };
    const { member, account } = await memberAccount(options, session as MemberSession);
    return { kind: "member", email: member.email, account: accountJson(account), csrf_token: session.csrfToken };
  });
}
