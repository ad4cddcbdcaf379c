import type { FastifyInstance } from "fastify";
import { auditPageJson, auditRecordById, parseAuditQuery } from "../audit-query.js";
import type { AdminApiOptions, IdParams } from "./admin-context.js";

/** The audit log, every account's records. */
export function auditRoutes(app: FastifyInstance, { audit }: AdminApiOptions): void {
  app.get("/audit", async (request) => auditPageJson(await audit.query(parseAuditQuery(request.query))));
  app.get<IdParams>("/audit/:id", async (request) => auditRecordById(audit, request.params.id));
}
