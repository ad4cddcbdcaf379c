import { readFile } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { openApiDocument } from "../../api/openapi.js";
import { errors } from "../../errors.js";
import { setSecurityHeaders } from "../../dashboard/web-security.js";
import { ICON_LINK } from "./icon.js";

const VENDOR = new URL("../../../../dist/docs/vendor/", import.meta.url);

/** Swagger UI's files, copied from its npm package at build time, and the script that starts it (no inline script under the CSP). */
const ASSETS: ReadonlyMap<string, { body: () => Promise<Buffer | string>; type: string }> = new Map([
  ["swagger-ui-bundle.js", { body: () => readFile(new URL("swagger-ui-bundle.js", VENDOR)), type: "text/javascript; charset=utf-8" }],
  ["swagger-ui.css", { body: () => readFile(new URL("swagger-ui.css", VENDOR)), type: "text/css; charset=utf-8" }],
  ["docs.js", { body: async () => START_SCRIPT, type: "text/javascript; charset=utf-8" }],
]);

// validatorUrl: null, or Swagger UI would fetch a badge from a public validator.
const START_SCRIPT = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#reference", validatorUrl: null, deepLinking: true });\n`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alveare API reference</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
${ICON_LINK}
</head>
<body>
<main id="reference"></main>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script>
</body>
</html>
`;

/** GET /openapi.json and its rendering at /docs: public, no key. */
export async function apiDocsRoutes(app: FastifyInstance, options: { version: string }): Promise<void> {
  const document = JSON.stringify(openApiDocument(options.version));
  app.get("/openapi.json", async (_request, reply) => reply.type("application/json; charset=utf-8").send(document));

  await app.register(async (docs) => {
    docs.addHook("onRequest", async (_request, reply) => setSecurityHeaders(reply));
    docs.get("/docs", async (_request, reply) => reply.type("text/html; charset=utf-8").send(PAGE));
    docs.get<{ Params: { name: string } }>("/docs/assets/:name", async (request, reply) => {
      const asset = ASSETS.get(request.params.name);
      if (asset === undefined) throw errors.notFound("GET", request.url.split("?")[0] ?? "/");
      return reply
        .type(asset.type)
        .header("cache-control", "public, max-age=3600")
        .send(await asset.body());
    });
  });
}
