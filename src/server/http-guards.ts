import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { HttpLimits } from "../config/config.js";
import { errors, type ApiError } from "../errors.js";
import { requestId } from "../ids.js";
import { UNMATCHED_ROUTE } from "../observability/prometheus.js";
import { IGNORED_FIELDS_HEADER } from "./ignored-fields.js";
import type { Telemetry } from "../observability/telemetry.js";

/**
 * The HTTP layer's own defences: catalogue-shaped answers for what Node and
 * Fastify refuse before a route runs, time and connection limits, security
 * headers and CORS for the public API.
 */

/** Fastify's options for the limits; the connection cap and the stalled-reader rule are set on the server once it exists (connection-cap.ts). */
export function serverOptions(limits: HttpLimits): {
  requestTimeout: number;
  http: { headersTimeout: number; connectionsCheckingInterval: number; requireHostHeader: boolean };
} {
  return {
    requestTimeout: limits.requestTimeoutMs,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      // Node checks the timeouts on this interval (30 s by default, which would double a short timeout).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      // Node's own refusal of a request without Host is a bare 400; `unservableRequest` answers it instead.
      requireHostHeader: false,
    },
  };
}

/** Requests whose Expect Node found unmet (anything but 100-continue, on HTTP/1.1): `unservableRequest` refuses them. */
const unmetExpectations = new WeakSet<IncomingMessage>();

/** Requests whose client waits for 100 Continue before it sends the body (see `continueIfRead`). */
const awaitingContinue = new WeakSet<IncomingMessage>();
export const awaitsContinue = (raw: IncomingMessage): boolean => awaitingContinue.has(raw);

/**
 * What Node would refuse bare before any route (no Host on HTTP/1.1; an Expect
 * other than 100-continue, a 417 with no body) is handed to the app, which
 * answers it here in the catalogue's shape, its request id and headers
 * included; the caller closes the connection.
 */
export function unservableRequest(raw: IncomingMessage): ApiError | undefined {
  if (raw.headers.host === undefined && raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1) {
    return errors.invalidRequest("An HTTP/1.1 request must send a Host header.");
  }
  if (raw.headers.expect !== undefined && unmetExpectations.has(raw)) {
    return errors.invalidRequest("The server cannot meet this request's Expect header: only 100-continue is supported.");
  }
  return undefined;
}

/**
 * The server's own events that would otherwise end in a bare answer or none:
 * an unmet Expect goes on to the app as a request (refused there, see
 * `unservableRequest`); a CONNECT, which Node hands over as a raw socket and
 * closes unanswered when nobody listens, gets the catalogue's 400.
 */
/** Where a request refused before any route (no request object, so no request line of its own) is logged and counted. */
export interface UnroutedRequests {
  log: FastifyBaseLogger;
  telemetry: Telemetry;
}

/**
 * The request line of a request refused at the socket: the catalogue's code, Node's reason, the client's
 * address; no method or route (Node could not read them, or there is none to route). Counted under `unmatched`,
 * with no duration: it has no start the server saw.
 */
function logUnroutedRequest(to: UnroutedRequests, id: string, apiError: ApiError, socket: Socket, fields: Record<string, unknown>): void {
  to.log.info({ request_id: id, status: apiError.status, code: apiError.code, ...fields, client_ip: socket.remoteAddress }, "request");
  to.telemetry.httpRequest(UNMATCHED_ROUTE, apiError.status, undefined);
}

export function guardServer(server: Server, to: UnroutedRequests, requestIdFor: (raw: IncomingMessage) => string): void {
  // Node would answer 100 Continue at once, inviting the upload of a body the server then refuses unread (413, 401).
  server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
    awaitingContinue.add(request);
    server.emit("request", request, response);
  });
  server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
    unmetExpectations.add(request);
    server.emit("request", request, response);
  });
  server.on("connect", (request: IncomingMessage, socket: Socket) => {
    // Node no longer watches this socket: a client that resets it must not crash the process.
    socket.on("error", () => undefined);
    const id = requestIdFor(request);
    const apiError = errors.invalidRequest("CONNECT is not supported: this server is not a proxy.");
    logUnroutedRequest(to, id, apiError, socket, { method: "CONNECT" });
    if (socket.writable) socket.write(rawResponse(apiError, id));
    socket.destroy();
  });
}

interface ClientError extends Error {
  code: string;
}

/** Responses answered at the socket; the route waiting for the body would log its own failure instead. */
const answeredByClientError = new WeakMap<ServerResponse, ApiError>();

/** The error a client error already answered this response with, for its log line (status and code). */
export const clientErrorAnswer = (response: ServerResponse): ApiError | undefined => answeredByClientError.get(response);

/** The id of each response's request, for an answer written at the socket (a timeout mid-body) to carry. */
const requestIds = new WeakMap<ServerResponse, string>();

/** Remembers a request's id for the socket's answer, should a client error answer it. */
export const rememberRequestId = (response: ServerResponse, id: string): void => void requestIds.set(response, id);

/** Node's own answers to a broken request are bare; ours carry the error catalogue's body. */
export function clientErrorHandler(limits: HttpLimits, telemetry: Telemetry) {
  return function answerClientError(this: FastifyInstance, error: ClientError, socket: Socket): void {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    // A refused body being drained has had its answer; a timeout there only ends the connection.
    if (draining.has(socket)) {
      socket.destroy();
      return;
    }
    const apiError = refusalFor(error, socket, limits);
    // A request whose headers were read has its id (and its log line); any other gets a fresh one.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    const observedId = inFlight ? requestIds.get(inFlight) : undefined;
    const id = observedId ?? requestId();
    // A request the app already observed writes its own line (with this answer) when its response closes: one line a request.
    if (observedId !== undefined) this.log.debug({ request_id: id, reason: error.code }, "client error");
    // A connection that sent nothing (a balancer's or a browser's preconnect, timed out) made no request to count.
    else if (socket.bytesRead === 0) this.log.info({ request_id: id, status: apiError.status, reason: error.code }, "client error");
    else logUnroutedRequest({ log: this.log, telemetry }, id, apiError, socket, { reason: error.code });
    // A response that has started cannot take a second one on the same socket.
    if (socket.writable && inFlight?.headersSent !== true) {
      if (inFlight) answeredByClientError.set(inFlight, apiError);
      socket.write(rawResponse(apiError, id));
    }
    socket.destroy();
  };
}

/** The catalogue's answer to what Node reports about a request it could not take. */
function refusalFor(error: ClientError, socket: Socket, limits: HttpLimits): ApiError {
  switch (error.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      // Node reports both timeouts alike. Headers still arriving met the headers timeout, never the longer one.
      return headersReceived(socket) ? errors.requestTimeout(limits.requestTimeoutMs) : errors.headersTimeout(limits.headersTimeoutMs);
    case "HPE_HEADER_OVERFLOW":
      return errors.headersTooLarge();
    default:
      return errors.invalidRequest("The server could not read this HTTP request.");
  }
}

/**
 * Whether the request the socket is reading has all its headers in (its body is
 * what is late): Node's parser holds that request from its headers until it is
 * read in full, and a kept-alive connection's finished request or none otherwise.
 */
function headersReceived(socket: Socket): boolean {
  const incoming = (socket as Socket & { parser?: { incoming?: IncomingMessage | null } | null }).parser?.incoming;
  return incoming != null && !incoming.complete;
}

/** Connections reading and discarding the rest of a refused body. */
const draining = new WeakSet<Socket>();

/** How much of a refused body is read and thrown away before the connection is cut instead. */
export const drainLimit = (bodyLimit: number): number => 1024 * 1024 + 4 * bodyLimit;

const DRAIN_CHECK_MS = 50;

/**
 * A body over the limit is answered 413 before it is read. Closing then would
 * leave the unread rest in the socket, which makes the kernel reset the
 * connection, and a client still uploading (Python's urllib among them) gets
 * a broken pipe instead of the 413. So the connection stays open and Node
 * discards the rest of the body as it arrives, up to `limit` bytes more and
 * within the request timeout; past either, it is cut.
 */
export function drainRefusedBody(request: FastifyRequest, reply: FastifyReply, limit: number): void {
  const { raw } = request;
  const socket = raw.socket;
  if (raw.complete || socket.destroyed) return;
  // What Node would have done after this answer: a request that said `connection: close` (or HTTP/1.0 without
  // keep-alive) has its connection closed once the body is drained, not kept alive.
  const closeWhenDrained = !reply.raw.shouldKeepAlive;
  // Fastify asks for a close here; Node would also close for a request that said `connection: close`.
  reply.removeHeader("connection");
  reply.raw.shouldKeepAlive = true;
  draining.add(socket);
  const readBefore = socket.bytesRead;
  // Node's parser consumes the socket and a dumped body emits no data, so the count is polled.
  const check = setInterval(() => {
    if (socket.bytesRead - readBefore > limit) socket.destroy();
  }, DRAIN_CHECK_MS);
  check.unref();
  const done = (): void => {
    clearInterval(check);
    draining.delete(socket);
  };
  raw.once("end", () => {
    done();
    if (!closeWhenDrained) return;
    // After the answer's bytes, as Node ends a connection whose last answer this is. The body may be drained
    // before the answer is written (an onSend hook awaiting Redis for the limit headers).
    if (reply.raw.writableFinished) socket.destroySoon();
    else reply.raw.once("finish", () => socket.destroySoon());
  });
  socket.once("close", done);
}

function rawResponse(error: ApiError, id: string): string {
  const body = JSON.stringify(error.toBody());
  return [
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ""}`,
    "content-type: application/json; charset=utf-8",
    `content-length: ${Buffer.byteLength(body)}`,
    "x-content-type-options: nosniff",
    `x-request-id: ${id}`,
    "connection: close",
    "",
    body,
  ].join("\r\n");
}

/** Fastify's default bound on one path parameter (its maxParamLength). */
const MAX_PATH_PARAMETER = 100;

/** Errors Fastify raises before routing (a malformed URL) would otherwise get Fastify's own body. */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const apiError =
    error.code === "FST_ERR_BAD_URL"
      ? errors.invalidRequest("The request URL is malformed (check its percent-encoding).")
      : error.code === "FST_ERR_MAX_PARAM_LENGTH"
        ? // The router's bound on one path parameter (an id, a model name): the URL's encoding is not at fault.
          errors.invalidRequest(`A path segment is longer than ${MAX_PATH_PARAMETER} characters; no id or model name is that long.`)
        : errors.internal();
  request.logFields.code = apiError.code;
  void reply.code(apiError.status).headers(securityHeaders(request.url)).header("x-request-id", request.id).send(apiError.toBody());
}

const API_PREFIX = "/v1";
export const isApiPath = (url: string): boolean => url === API_PREFIX || url.startsWith(`${API_PREFIX}/`) || url.startsWith(`${API_PREFIX}?`);

/** Headers the SDKs read from an answer; a browser hides any not named here. */
const EXPOSED_HEADERS = [
  "x-request-id",
  "retry-after",
  "retry-after-ms",
  "x-should-retry",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
  // Sent where the plan caps tokens.
  "x-ratelimit-limit-tokens",
  "x-ratelimit-remaining-tokens",
  "x-ratelimit-reset-tokens",
  // The request's fields the route does not read: a typo said to a browser's developer too.
  IGNORED_FIELDS_HEADER,
].join(", ");

/**
 * Every response is nosniff. The public API is open to browsers of any origin:
 * keys are bearer tokens, never cookies, so no credentials are allowed and a
 * page can only spend a key it already holds. The dashboard and admin API,
 * which do use cookies, never answer cross-origin.
 */
export function securityHeaders(url: string): Readonly<Record<string, string>> {
  return isApiPath(url) ? API_HEADERS : OTHER_HEADERS;
}

// Built once: the same two header sets for every response.
const OTHER_HEADERS: Readonly<Record<string, string>> = Object.freeze({ "x-content-type-options": "nosniff" });
const API_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  ...OTHER_HEADERS,
  "access-control-allow-origin": "*",
  "access-control-expose-headers": EXPOSED_HEADERS,
});

const ALLOWED_REQUEST_HEADERS = new Set(["authorization", "content-type", "x-request-id"]);
/** Sent by an OpenAI SDK made with `organization` or `project`: ignored here, but a preflight refusing them would stop its requests. */
const OPENAI_CLIENT_HEADERS = new Set(["openai-organization", "openai-project"]);
/** The OpenAI SDKs send their own telemetry headers; a preflight refusing them would break those clients. */
const isAllowedRequestHeader = (name: string): boolean =>
  ALLOWED_REQUEST_HEADERS.has(name) || OPENAI_CLIENT_HEADERS.has(name) || name.startsWith("x-stainless-");

/** The most of a body a preflight reads (browsers send none). */
const PREFLIGHT_BODY_LIMIT = 1024;

/** Answers CORS preflights for /v1 before authentication, which a preflight never carries. */
export async function corsPreflight(app: FastifyInstance): Promise<void> {
  const answer = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const requested = String(request.headers["access-control-request-headers"] ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h.length > 0 && isAllowedRequestHeader(h));
    const allowed = [...new Set([...ALLOWED_REQUEST_HEADERS, ...requested])];
    return reply
      .code(204)
      .header("access-control-allow-methods", "GET, POST, OPTIONS")
      .header("access-control-allow-headers", allowed.join(", "))
      .header("access-control-max-age", "600")
      .send();
  };
  // Anyone may send one: whatever body comes is read only this far, then refused (413), and never decoded or parsed.
  const route = { bodyLimit: PREFLIGHT_BODY_LIMIT };
  app.options(API_PREFIX, route, answer);
  app.options(`${API_PREFIX}/*`, route, answer);
}
