import type { FastifyInstance } from "fastify";

/** Alveare's mark: an amber hexagon, a cell of the hive. */
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><polygon points="16,2 28,9 28,23 16,30 4,23 4,9" fill="#f2a900"/></svg>\n`;

/** The <link> our pages carry; the icon itself is this route's. */
export const ICON_LINK = `<link rel="icon" href="/favicon.ico" type="image/svg+xml">`;

/**
 * GET /favicon.ico: public, answered as SVG (browsers take it whatever the name). Every browser asks for it on
 * any page it opens here, /openapi.json included: without it, a 404 in every console.
 */
export async function iconRoute(app: FastifyInstance): Promise<void> {
  app.get("/favicon.ico", async (_request, reply) => reply.type("image/svg+xml").header("cache-control", "public, max-age=86400").send(ICON_SVG));
}
