import { request } from "node:http";

export interface LoopbackResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown>;
}

/**
 * One HTTP request sent from a chosen loopback address (any of 127.0.0.0/8 on
 * Linux), so tests can be several real clients with distinct addresses.
 */
export function requestFrom(
  localAddress: string,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<LoopbackResponse> {
  const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  // Content-Length always with a body: Node sends a DELETE's body without one (nor chunking), which no server can read.
  const headers: Record<string, string> = {
    ...(body === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }),
    ...options.headers,
  };
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? (body === undefined ? "GET" : "POST"), headers, localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: Record<string, unknown> = {};
        try {
          json = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
        } catch {
          json = { text };
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The error code of a catalogue-shaped error body. */
export const errorCode = (json: Record<string, unknown>): string | undefined => (json.error as { code?: string } | undefined)?.code;
