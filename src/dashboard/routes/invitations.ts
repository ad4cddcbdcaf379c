import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { dashboardRequests } from "../../api/schemas/dashboard.js";
import { errors } from "../../errors.js";
import { acceptable } from "../../store/store.js";
import { parseBody } from "../../schema/request-errors.js";
import { checkSameOrigin } from "../web-security.js";
import type { DashboardOptions } from "./member-context.js";

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");
/** An invitation's details before a password is typed (accepting one starts a session: sessions.ts). */
export function invitationRoutes(app: FastifyInstance, { stores }: DashboardOptions): void {
  // POST so the token travels in a body, never in a URL that logs could keep.
  app.post("/api/invitations/check", async (request) => {
    checkSameOrigin(request);
    const invitation = await stores.people.findInvitation(sha256(parseBody(dashboardRequests.checkInvitation, request.body).token));
    // Only a link that can still be accepted names whom it is for: a used or expired one (a link kept in a mailbox, a
    // chat, a shared browser's history) answered with the member's e-mail and the account's name, to anyone holding it.
    // It answers as an unknown one does, so it tells nothing of whether it ever was an invitation.
    if (!acceptable(invitation)) throw errors.invitationNotFound();
    const member = await stores.people.getMember(invitation.memberId);
    const account = member && (await stores.accounts.getAccount(member.accountId));
    if (member === undefined || account === undefined) throw errors.invitationNotFound();
    return { state: "valid", email: member.email, account_name: account.name, expires_at: invitation.expiresAt, used_at: null };
  });
}
