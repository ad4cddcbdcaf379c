import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { dashboardRequests } from "../../api/schemas/dashboard.js";
import { ApiError } from "../../errors.js";
import { parseBody } from "../../schema/request-errors.js";
import { checkSameOrigin } from "../web-security.js";
import type { DashboardOptions } from "./member-context.js";

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");
const invalidInvitation = (): ApiError =>
  new ApiError(404, "invalid_request_error", "invitation_not_found", "This invitation link is not valid; ask for a new one.");

/** An invitation's details before a password is typed (accepting one starts a session: sessions.ts). */
export function invitationRoutes(app: FastifyInstance, { stores }: DashboardOptions): void {
  // POST so the token travels in a body, never in a URL that logs could keep.
  app.post("/api/invitations/check", async (request) => {
    checkSameOrigin(request);
    const invitation = await stores.people.findInvitation(sha256(parseBody(dashboardRequests.checkInvitation, request.body).token));
    const member = invitation && (await stores.people.getMember(invitation.memberId));
    const account = member && (await stores.accounts.getAccount(member.accountId));
    if (invitation === undefined || member === undefined || account === undefined) throw invalidInvitation();
    const state = invitation.usedAt !== null ? "used" : Date.parse(invitation.expiresAt) <= Date.now() ? "expired" : "valid";
    return { state, email: member.email, account_name: account.name, expires_at: invitation.expiresAt, used_at: invitation.usedAt };
  });
}
