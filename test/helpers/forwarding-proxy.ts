import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ForwardingProxy {
  /** Where clients connect: http://127.0.0.1:port */
  url: string;
  close(): Promise<void>;
}

/**
 * A minimal TLS-terminating reverse proxy as nginx is usually set up: it
 * forwards every request to `target` and adds X-Forwarded-For (appending the
 * connecting client's address to any the client sent), X-Forwarded-Proto:
 * https and X-Forwarded-Host: `publicHost`. TLS itself is left out: the
 * server only ever sees what such a proxy tells it.
 */
export async function startForwardingProxy(target: string, publicHost: string): Promise<ForwardingProxy> {
  const upstream = new URL(target);
  const server: Server = createServer((incoming, outgoing) => {
    const client = incoming.socket.remoteAddress ?? "";
    const given = incoming.headers["x-forwarded-for"];
    const headers = {
      ...incoming.headers,
      host: upstream.host,
      "x-forwarded-for": given === undefined ? client : `${String(given)}, ${client}`,
      "x-forwarded-proto": "https",
      "x-forwarded-host": publicHost,
    };
    const forwarded = request({ host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers }, (answer) => {
      outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(outgoing);
    });
    forwarded.on("error", () => {
      outgoing.writeHead(502).end();
    });
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
