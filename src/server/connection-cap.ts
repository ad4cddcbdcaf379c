import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** What Node keeps on an HTTP server's socket: the answer in progress, and the parser with the request it is reading. */
type HttpSocket = Socket & {
  _httpMessage?: ServerResponse | null;
  parser?: { incoming?: IncomingMessage | null } | null;
};

/**
 * Whether a connection holds its place without a request being answered: it has sent nothing, or not yet its
 * whole request (headers, or a body the route is still waiting for, or one read and dropped after its answer),
 * or it is kept alive idle between requests. Closing it loses no answer anyone is waiting for.
 */
function waiting(socket: HttpSocket): boolean {
  const response = socket._httpMessage;
  if (response == null) return true;
  // The parser may be reading a request pipelined behind the one being answered: that answer is still owed.
  const incoming = socket.parser?.incoming;
  return incoming != null && incoming === response.req && !incoming.complete && (!response.headersSent || response.writableFinished);
}

/**
 * Holds the server to `max` open connections. At the cap, a new connection takes the place of the one that has
 * waited longest without a request being answered, and is closed itself only when every connection is being
 * answered. Node's own `maxConnections` closes the newcomer instead, so a client holding every place with
 * connections that send nothing (or trickle their headers) shut everyone else out for as long as it kept
 * reopening them as the headers timeout cut them: a few dozen connections a second, without a key.
 */
export function capConnections(server: Server, max: number): void {
  // Insertion order is arrival order: the first waiting one found is the one that has waited longest.
  const open = new Set<HttpSocket>();
  server.on("connection", (socket: HttpSocket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    if (open.size <= max) return;
    let evicted: HttpSocket = socket;
    for (const candidate of open) {
      if (candidate !== socket && waiting(candidate)) {
        evicted = candidate;
        break;
      }
    }
    // Out of the count now: 'close' comes a tick later, after connections that arrive meanwhile are counted.
    open.delete(evicted);
    evicted.destroy();
  });
}
