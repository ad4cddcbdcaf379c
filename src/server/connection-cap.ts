import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { isEventStream } from "./sse.js";
import { limitedAddress } from "../accounts/people.js";

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
 * Holds the server to `max` open connections. At the cap, a new connection takes the place of one that waits
 * without a request being answered: of those, one from the client address holding the most connections, and of
 * its, the one that has waited longest. The newcomer is closed itself only when every connection is being
 * answered. Node's own `maxConnections` closes the newcomer instead, so a client holding every place with
 * connections that send nothing (or trickle their headers) shut everyone else out for as long as it kept
 * reopening them as the headers timeout cut them: a few dozen connections a second, without a key. Preferring
 * the busiest address makes such a client's own connections give way before another client's upload or
 * kept-alive connection (behind a proxy every connection has the proxy's address, and the oldest goes first).
 */
export function capConnections(server: Server, max: number): void {
  // Each connection's client address, read on arrival (a closed socket has none); insertion order is arrival order.
  const open = new Map<HttpSocket, string>();
  const perAddress = new Map<string, number>();
  const forget = (socket: HttpSocket): void => {
    const address = open.get(socket);
    if (address === undefined) return;
    open.delete(socket);
    const left = perAddress.get(address)! - 1;
    if (left === 0) perAddress.delete(address);
    else perAddress.set(address, left);
  };
  server.on("connection", (socket: HttpSocket) => {
    // Counted per client as the sign-in limits count them: an IPv6 client by its /64, which it usually holds whole.
    const address = limitedAddress(socket.remoteAddress ?? "");
    open.set(socket, address);
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
    socket.once("close", () => forget(socket));
    if (open.size <= max) return;
    let evicted: HttpSocket = socket;
    let most = 0;
    for (const [candidate, from] of open) {
      if (candidate === socket || !waiting(candidate)) continue;
      const held = perAddress.get(from)!;
      if (held > most) {
        evicted = candidate;
        most = held;
      }
    }
    // Out of the count now: 'close' comes a tick later, after connections that arrive meanwhile are counted.
    forget(evicted);
    evicted.destroy();
  });
}

/**
 * Cuts a connection whose client has read nothing for `stallMs` while an answer waits to be written to it, the
 * rule streams already keep (`EventStream`), for whole answers too: a client that asks for big answers (the API
 * documentation's 1.7 MB script, pipelined) and never reads them held each connection, and with enough of them
 * every place under the cap, for as long as it liked, since a connection being answered never gives way. Node
 * times a connection out after `stallMs` without reading or writing (its write-progress check keeps a slow
 * reader's alive). An idle kept-alive connection's timeout still closes it, as Node's default does; a connection
 * that has not sent its request yet, whose answer is still being worked out (a long generation) or that streams
 * (its own rule) is left alone.
 */
export function cutStalledReaders(server: Server, stallMs: number): void {
  server.timeout = stallMs;
  server.on("timeout", (socket: HttpSocket) => {
    const response = socket._httpMessage;
    // No answer under way: a kept-alive connection idle past its timeout closes, as without this listener (Node
    // arms that one's timer with its own value, the keep-alive timeout and a margin). One that has not sent its
    // request yet (its timer is ours) is the headers timeout's to end, as before: a short stall setting must not
    // cut a client (a browser's pre-opened connection) for being slow to begin.
    if (response == null) {
      if (socket.timeout !== server.timeout) socket.destroy();
      return;
    }
    if (isEventStream(response)) return;
    if (socket.writableLength > 0) socket.destroy();
  });
}
