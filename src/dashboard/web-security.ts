import { timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError, errors } from "../errors.js";
import type { Session } from "../store/store.js";

export const SESSION_COOKIE = "alveare_session";
/**
 * The session cookie's name over TLS. Browsers keep a __Host- cookie only when it is Secure, has Path=/ and
 * no Domain, and was set by a secure origin: so neither a sibling subdomain (SameSite counts it as the same
 * site) nor an injected plain-HTTP answer can plant a session of its own, with a longer Path, that the
 * browser would send before ours and sign the victim into the attacker's account (session fixation).
 */
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;

/** Whether the dashboard is served over TLS here (a trusted proxy's X-Forwarded-Proto may say HTTPS: schemes are case-insensitive). */
const overTls = (request: FastifyRequest): boolean => request.protocol.toLowerCase() === "https";

/** The session cookie's name for this request: only the __Host- one is read over TLS. */
const sessionCookieName = (request: FastifyRequest): string => (overTls(request) ? SECURE_SESSION_COOKIE : SESSION_COOKIE);

/** Headers every dashboard and admin response carries: no inline script, no framing, no sniffing. */
export function setSecurityHeaders(reply: FastifyReply): void {
  reply.header(
    "content-security-policy",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
      "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  );
  reply.header("x-frame-options", "DENY");
  reply.header("x-content-type-options", "nosniff");
  reply.header("referrer-policy", "no-referrer");
  reply.header("cross-origin-opener-policy", "same-origin");
}

/** The dashboard's API answers are per person: security headers, and never cached. */
export async function dashboardResponseHeaders(_request: FastifyRequest, reply: FastifyReply): Promise<void> {
  setSecurityHeaders(reply);
  reply.header("cache-control", "no-store");
}

export const notSignedIn = errors.notSignedIn;

/** A cookie's value; undefined when absent or not valid percent-encoding (a broken cookie is no session). */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** The session token of a request's cookie, if any. */
export const readSessionCookie = (request: FastifyRequest): string | undefined => readCookie(request, sessionCookieName(request));

/** HttpOnly and SameSite=Strict always; Secure, under the __Host- name, whenever the dashboard is served over TLS (or a trusted proxy says it is). */
export function setSessionCookie(request: FastifyRequest, reply: FastifyReply, token: string, maxAgeSeconds: number): void {
  const secure = overTls(request) ? "; Secure" : "";
  reply.header("set-cookie", `${sessionCookieName(request)}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure}`);
}

/**
 * application/json with any parameters, in any case (media types are case-insensitive). Any such type needs a CORS
 * preflight, which a cross-site form cannot send: only its own three types (urlencoded, multipart, text/plain) go without.
 */
const isJsonType = (type: string | undefined): boolean => /^\s*application\/json\s*(;|$)/i.test(type ?? "");

const forbidden = (message: string): ApiError => new ApiError(403, "permission_error", "csrf_failed", message);

/** "https://host:443" and "https://host" are the same origin (a proxy may name the port in X-Forwarded-Host). */
const withoutDefaultPort = (origin: string): string => origin.toLowerCase().replace(/^(https:\/\/[^/]*):443$|^(http:\/\/[^/]*):80$/, "$1$2");

/**
 * Refuses requests another site made the browser send: a foreign Origin (compared
 * with the scheme and host a trusted proxy forwarded, when there is one) or
 * Sec-Fetch-Site, or a body that is not JSON (which a cross-site form could post
 * without a CORS preflight).
 */
export function checkSameOrigin(request: FastifyRequest): void {
  const origin = request.headers.origin;
  if (origin !== undefined && withoutDefaultPort(origin) !== withoutDefaultPort(`${request.protocol}://${request.host}`)) {
    throw forbidden("Cross-site request refused.");
  }
  const site = request.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") throw forbidden("Cross-site request refused.");
  if (request.method !== "GET" && request.method !== "HEAD" && !isJsonType(request.headers["content-type"])) {
    throw forbidden("State-changing requests must send JSON.");
  }
}

/**
 * The header's token against the session's in constant time, so timing tells no prefix of it. Only the length may
 * differ quickly: every session's token has the same public length, and timingSafeEqual needs equal lengths.
 */
function sameCsrfToken(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** State changes with a session cookie also need the session's CSRF token in a header only our page can read. */
export function checkCsrf(request: FastifyRequest, session: Session): void {
  checkSameOrigin(request);
  if (request.method === "GET" || request.method === "HEAD") return;
  if (!sameCsrfToken(request.headers["x-csrf-token"], session.csrfToken)) throw forbidden("Missing or wrong CSRF token; reload the page.");
}
