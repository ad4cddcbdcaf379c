import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { capConnections } from "../server/connection-cap.js";
import type { PrometheusMetrics } from "./prometheus.js";

/**
 * Connections the metrics listener holds at once. A scraper needs one; without
 * a cap, idle connections to this port (reachable from the network once
 * ALVEARE_METRICS_HOST says so) could take every file descriptor the process
 * has, and the API's listener could then accept nobody.
 */
export const MAX_METRICS_CONNECTIONS = 16;
/** A scrape's request is a few bytes: one that takes longer (or a connection that sends nothing) is closed. */
const METRICS_REQUEST_TIMEOUT_MS = 5000;

/** A separate listener for Prometheus, so metrics never share the public port. */
export async function listenForMetrics(metrics: PrometheusMetrics, port: number, host: string): Promise<{ url: string; close(): Promise<void> }> {
  const options = { headersTimeout: METRICS_REQUEST_TIMEOUT_MS, requestTimeout: METRICS_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 };
  const server: Server = createServer(options, (req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found; metrics are at /metrics\n");
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (error: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${(error as Error).message}\n`),
    );
  });
  // At the cap, connections kept alive between scrapes, or that send nothing, make way for the next ones.
  capConnections(server, MAX_METRICS_CONNECTIONS);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: Error) =>
      reject(
        new Error(
          `cannot serve metrics on ${host}:${port} (ALVEARE_METRICS_HOST, ALVEARE_METRICS_PORT): ${error.message}; choose another port, or 0 to turn metrics off`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
