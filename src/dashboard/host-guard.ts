import { isIP } from "node:net";
import type { FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";

/** What the guard needs of the server's configuration. */
export interface HostGuardConfig {
  /** The address the server listens on (ALVEARE_HOST). */
  host: string;
  /** ALVEARE_PUBLIC_URL, or the listening address. */
  publicUrl: string;
  /** ALVEARE_TRUST_PROXY: with a trusted proxy in front, the proxy decides which names reach us. */
  trustProxy: boolean | number | string[];
}

/** A Host header's name without its port; IPv6 in brackets comes back without them. */
const bare = (hostname: string): string => hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();

const isLoopbackName = (name: string): boolean => name === "localhost" || name.endsWith(".localhost");
const isLoopback = (host: string): boolean => isLoopbackName(host) || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);

/**
 * DNS rebinding: a page at http://evil.example:8080 whose name the attacker then points at 127.0.0.1 talks,
 * from the operator's own browser, to a server that listens on loopback only. The browser counts it as the
 * page's own origin (Origin and Host both say evil.example), so the Origin check passes, and its sign-in and
 * admin-token guesses lock the operator and every member out of their own address. A loopback-only server is
 * reached by an IP address, a loopback name or the name of its ALVEARE_PUBLIC_URL: its dashboard and admin API
 * refuse any other Host. (A server listening on the network, or behind a trusted proxy, can be reached
 * directly anyway; it is left as it was.) Undefined when there is nothing to guard.
 */
export function hostGuard(config: HostGuardConfig): ((request: FastifyRequest) => void) | undefined {
  if (config.trustProxy !== false || !isLoopback(bare(config.host))) return undefined;
  const own = new Set([bare(config.host), bare(new URL(config.publicUrl).hostname)]);
  return (request) => {
    // A request without Host (HTTP/1.0) names nothing to rebind.
    const name = bare(request.hostname);
    if (name === "" || isIP(name) !== 0 || isLoopbackName(name) || own.has(name)) return;
    throw new ApiError(
      403,
      "permission_error",
      "csrf_failed",
      "Cross-site request refused: this server listens on loopback only, and answers its dashboard at localhost, " +
        "an IP address or ALVEARE_PUBLIC_URL, not at the name this request was sent to.",
    );
  };
}
