import type { FastifyInstance } from "fastify";
import { auditPageJson, auditRecordById, memberAuditRecordJson, parseAuditQuery } from "../../admin/audit-query.js";
import { errors, shortened } from "../../errors.js";
import { signedInMember, type DashboardOptions } from "./member-context.js";

/** The member's own account's audit records (the operator's address left out); any other account's are answered as missing. */
export function auditRoutes(app: FastifyInstance, options: DashboardOptions): void {
  const { audit } = options;

  app.get("/api/audit", async (request) => {
    const { account } = await signedInMember(options, request);
    const query = parseAuditQuery(request.query);
    if (query.accountId !== undefined && query.accountId !== account.id) throw errors.notFoundResource(`no account '${shortened(query.accountId)}'`);
    return auditPageJson(await audit.query({ ...query, accountId: account.id }), memberAuditRecordJson);
  });

  app.get<{ Params: { id: string } }>("/api/audit/:id", async (request) => {
    const { account } = await signedInMember(options, request);
    return auditRecordById(audit, request.params.id, (record) => record.accountId === account.id, memberAuditRecordJson);
  });
}
