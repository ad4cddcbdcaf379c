import { readFile } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { errors } from "../errors.js";
import { withoutKeys } from "../gate/credentials.js";
import { auditRoutes } from "./routes/audit.js";
import { invitationRoutes } from "./routes/invitations.js";
import { keyRoutes } from "./routes/keys.js";
import type { DashboardOptions } from "./routes/member-context.js";
import { sessionRoutes } from "./routes/sessions.js";
import { usageRoutes } from "./routes/usage.js";
import { dashboardResponseHeaders } from "./web-security.js";

/** The dashboard API's resources, one file each under routes/. */
const RESOURCES = [sessionRoutes, invitationRoutes, keyRoutes, auditRoutes, usageRoutes];

const ROOT = new URL("../../../", import.meta.url);
/** A Map, so names like "constructor" or "__proto__" are simply not found. */
const ASSETS: ReadonlyMap<string, { file: URL; type: string }> = new Map([
  ["app.js", { file: new URL("dist/dashboard/app.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["styles.css", { file: new URL("dashboard/public/styles.css", ROOT), type: "text/css; charset=utf-8" }],
  ["dom.js", { file: new URL("dist/dashboard/dom.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["charts.js", { file: new URL("dist/dashboard/charts.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["keys.js", { file: new URL("dist/dashboard/keys.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["member.js", { file: new URL("dist/dashboard/member.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["operator.js", { file: new URL("dist/dashboard/operator.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["audit.js", { file: new URL("dist/dashboard/audit.js", ROOT), type: "text/javascript; charset=utf-8" }],
  ["chart.umd.min.js", { file: new URL("dist/dashboard/vendor/chart.umd.min.js", ROOT), type: "text/javascript; charset=utf-8" }],
]);
const INDEX = new URL("dashboard/public/index.html", ROOT);

/**
 * The dashboard API's bodies hold an e-mail, a password or token, a key's name: a few KB even with every
 * character escaped. Its bodies are parsed before any session is checked (a sign-in has none yet), so with the
 * API's 1 MiB anyone could make the server parse a megabyte per request: 3,900 arrays nested 128 deep take
 * JSON.parse ~100 ms and gzip to about a kilobyte.
 */
export const DASHBOARD_BODY_LIMIT = 16 * 1024;

/** A browser that opens the server's own address lands on the dashboard; an API client keeps its 404. */
export async function dashboardHome(app: FastifyInstance): Promise<void> {
  app.get("/", async (request, reply) => {
    if (!(request.headers.accept ?? "").includes("text/html")) throw errors.notFound("GET", "/");
    return reply.redirect("/dashboard/", 302);
  });
}

/**
 * The dashboard: a static page and the JSON API it calls under /dashboard/api.
 * Members see and change only their own account; the operator's pages call
 * the admin API with the admin session cookie.
 */
export function dashboardRoutes(options: DashboardOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    // Before any route of this scope is added, so each gets it; the server's body_limit still applies when smaller.
    app.addHook("onRoute", (route) => {
      route.bodyLimit = Math.min(app.initialConfig.bodyLimit ?? DASHBOARD_BODY_LIMIT, DASHBOARD_BODY_LIMIT);
    });
    app.addHook("onRequest", dashboardResponseHeaders);
    const { checkHost } = options;
    if (checkHost !== undefined) app.addHook("onRequest", async (request) => checkHost(request));

    app.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(await readFile(INDEX)));
    app.get<{ Params: { name: string } }>("/assets/:name", async (request, reply) => {
      const asset = ASSETS.get(request.params.name);
      if (asset === undefined) throw errors.notFound("GET", request.url.split("?")[0] ?? "/");
      return reply.type(asset.type).send(await readFile(asset.file));
    });

    for (const register of RESOURCES) register(app, options);
    // Unknown paths under /dashboard are answered in this scope, so its hook gives them the same headers.
    app.setNotFoundHandler((request) => {
      throw errors.notFound(request.method, withoutKeys(request.url.split("?")[0] ?? "/")); // a pasted key is not echoed whole
    });
  };
}
