import type { TestServer } from "./fixtures.js";
import { requestFrom } from "./loopback-client.js";

export interface BrowserResponse {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

/**
 * A browser-like client of the dashboard: keeps the session cookie and the
 * CSRF token it is given, and sends same-origin headers, as the page does.
 */
export class Browser {
  cookie = "";
  csrf = "";
  /** The browser's own loopback address: sign-in failures are limited per address. */
  constructor(
    readonly server: TestServer,
    readonly address = "127.0.0.1",
  ) {}

  /** `extra` headers win over the ones it would send; an explicit x-csrf-token replaces the kept one. */
  async call(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<BrowserResponse> {
    const headers: Record<string, string> = { origin: this.server.url, ...extra };
    if (this.cookie) headers.cookie = this.cookie;
    if (method !== "GET") {
      headers["content-type"] ??= "application/json";
      if (this.csrf && !("x-csrf-token" in extra)) headers["x-csrf-token"] = this.csrf;
    }
    const response = await requestFrom(this.address, `${this.server.url}${path}`, {
      method,
      headers,
      body: method === "GET" ? undefined : JSON.stringify(body ?? {}),
    });
    const setCookie = response.headers["set-cookie"]?.[0];
    if (setCookie) this.cookie = setCookie.split(";")[0]!;
    if (typeof response.json.csrf_token === "string") this.csrf = response.json.csrf_token;
    return {
      status: response.status,
      headers: new Headers(Object.entries(response.headers).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]]))),
      json: response.json,
    };
  }
}
