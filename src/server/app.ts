import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import type { IncomingMessage } from "node:http";
import type { ChildLoggerOptions, Logger } from "pino";
import { ApiError, errors, shortened, shortenedTo, SHUTDOWN_CUT_STATUS, withoutTrailingSlashHint } from "../errors.js";
import type { Gate } from "../gate/gate.js";
import type { SpecialistSource } from "../inference/run-inference.js";
import { requestId } from "../ids.js";
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from "../config/config.js";
import { withoutQuery } from "../logger.js";
import {
  clientErrorHandler,
  clientErrorAnswer,
  corsPreflight,
  drainLimit,
  drainRefusedBody,
  frameworkErrorHandler,
  guardServer,
  isApiPath,
  rememberRequestId,
  securityHeaders,
  serverOptions,
  unservableRequest,
} from "./http-guards.js";
import { CLIENT_CLOSED } from "../metering/counting-rule.js";
import { authenticationHook, limitHeadersHook } from "./gate-adapter.js";
import { abortIfClosedEarly } from "./request-context.js";
import { bodyUnused, continueIfRead, decodedBody } from "./body-encoding.js";
import { capConnections, cutStalledReaders } from "./connection-cap.js";
import { LazyChildLogger } from "./lazy-child-logger.js";
import { chatCompletionsRoute } from "./routes/chat-completions.js";
import { embeddingsRoute } from "./routes/embeddings.js";
import { healthRoute } from "./routes/health.js";
import { apiDocsRoutes } from "./routes/api-docs.js";
import { iconRoute } from "./routes/icon.js";
import { inferRoute } from "./routes/infer.js";
import { modelsRoute } from "./routes/models.js";
import { GATE_ERROR_TYPES, NO_TELEMETRY, type Telemetry } from "../observability/telemetry.js";
import { UNMATCHED_ROUTE } from "../observability/prometheus.js";
import { readyRoute, type Lifecycle, type ReadinessSources } from "../observability/readiness.js";
import "../observability/request-trace.js";
import { reportFailure } from "./dependency-failure.js";
import { dependencyFailure } from "../dependency-unavailable.js";
import { PastedSecrets } from "./pasted-secrets.js";

export type { SpecialistSource } from "../inference/run-inference.js";

export interface AppOptions {
  specialists: SpecialistSource;
  gate: Gate;
  logger: Logger;
  version: string;
  bodyLimit: number;
  /** Whose X-Forwarded-* headers set request.ip, protocol and host (Fastify's trustProxy); false when absent. */
  trustProxy?: boolean | number | string[] | undefined;
  /** Aborted when the server shuts down, so in-flight generations stop. */
  shutdown: AbortSignal;
  /** Request timeouts and the connection cap; the defaults when absent. */
  http?: HttpLimits | undefined;
  /** Extra /v1 routes, behind the gate's authentication (usage). */
  v1Routes?: ReadonlyArray<(app: FastifyInstance) => Promise<void> | void>;
  /** Parts with their own authentication, each under its prefix (/admin/api, /dashboard). */
  mounts?: ReadonlyArray<{ prefix: string; plugin: (app: FastifyInstance) => Promise<void> | void }>;
  /** Metrics and traces; records nothing when absent. */
  telemetry?: Telemetry | undefined;
  /** Loading, serving or draining: /v1 takes new work only while serving. Always serving when absent. */
  lifecycle?: Lifecycle | undefined;
  /** What GET /ready checks; no /ready route when absent. */
  readiness?: ReadinessSources | undefined;
  /** ALVEARE_ADMIN_TOKEN, when set: pasted into a request id or a URL, it is neither echoed nor logged. */
  adminToken?: string | undefined;
}

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The most of an unknown URL's path a request line carries. */
const MAX_LOGGED_PATH = 512;

/** The client's id when it sent a sane one, else one of ours. */
const requestIds =
  (secrets: PastedSecrets) =>
  (req: IncomingMessage): string => {
    const given = req.headers["x-request-id"];
    // A secret (an API key, the admin token) pasted where an id goes would be echoed and logged: such an id is replaced by one of ours.
    return typeof given === "string" && CLIENT_REQUEST_ID.test(given) && !secrets.holds(given) ? given : requestId();
  };

/** The client left while its request was still arriving (a bodiless request is complete at its headers). */
const bodyCutShort = (request: FastifyRequest): boolean => request.raw.readableAborted && !request.raw.complete;

/** A request that announces no body: nothing of it is left to read once its headers are in. */
function bodiless(raw: IncomingMessage): boolean {
  const length = raw.headers["content-length"];
  return raw.headers["transfer-encoding"] === undefined && (length === undefined || length === "0");
}

/** OpenAI routes the OpenAI SDKs call (`client.responses`, `client.completions`) that this server does not serve. */
const UNSERVED_OPENAI_ROUTE = /^\/v1\/(responses|completions)(\/|$)/;

/**
 * What a 404 under /v1 should have been: a GET sent to a POST route (curl
 * without -d) is told the method; an OpenAI route not served, the one that is; /metrics, where metrics are.
 */
function notFoundHint(app: FastifyInstance, method: string, path: string, secrets: PastedSecrets): string | undefined {
  // A scraper pointed at the API's port: the metrics listener is apart so it stays off the public network.
  // True whether metrics are on or off (ALVEARE_METRICS_PORT=0): the API's port never serves them.
  if (path === "/metrics")
    return "metrics are never served on the API's port: they have a listener of their own (ALVEARE_METRICS_HOST, ALVEARE_METRICS_PORT; 0 turns it off)";
  // Every path under /v1 takes a CORS preflight, so any OPTIONS would be "meant" for /v1 (/health → /v1/health).
  if (method === "OPTIONS") return undefined;
  const unserved = "this server serves OpenAI's Chat Completions API (POST /v1/chat/completions), not the Responses API or legacy completions";
  // The commonest slips in pointing a client here: a base URL without /v1, one ending in "/" joined with a path
  // starting with "/", and one ending in /v1 joined with a path starting with /v1. Each was a bare "Unknown route".
  const meant = path.replace(/\/{2,}/g, "/").replace(/^(?:\/v1)+(?=\/)/, "/v1");
  const underV1 = meant.startsWith("/v1/") ? meant : `/v1${meant}`;
  if (underV1 !== path) {
    if (UNSERVED_OPENAI_ROUTE.test(underV1)) return unserved;
    // Only a path that takes this method: the one meant, not merely one that exists.
    if (app.findRoute({ method, url: underV1 }) !== null) {
      // Echoed as the path is (a key in it masked, 40 characters at most).
      const suggestion = `did you mean ${shortened(secrets.without(underV1))}?`;
      if (!path.startsWith("/v1/") && !path.startsWith("//"))
        return `${suggestion} The API's paths start with /v1: give clients the base URL http://<host>:<port>/v1`;
      if (/^\/+v1\/+v1\//.test(path)) return `${suggestion} The address has /v1 twice: a base URL ending in /v1 joined with a path starting with /v1`;
      return `${suggestion} The address has "//" in it: a base URL ending in "/" joined with a path starting with "/"`;
    }
  }
  // A trailing slash some clients (and probes: /health/) add: the route without it, where it takes this method.
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed !== path && trimmed !== "" && app.findRoute({ method, url: trimmed }) !== null)
    return withoutTrailingSlashHint(shortened(secrets.without(trimmed)));
  // POST /v1/chat: the route's last word left off (a base URL taken for the endpoint).
  const completions = `${underV1.replace(/\/+$/, "")}/completions`;
  if (completions.endsWith("/chat/completions") && app.findRoute({ method, url: completions }) !== null)
    return `did you mean ${completions}? (the chat route's full path)`;
  if (!path.startsWith("/v1/")) return undefined;
  const methods = ["GET", "POST"].filter((m) => app.findRoute({ method: m, url: path }) !== null);
  if (methods.length > 0) return `this path takes ${methods.join(" or ")}`;
  if (UNSERVED_OPENAI_ROUTE.test(path)) return unserved;
  return undefined;
}

/**
 * The one place a thrown error becomes the catalogue's answer, for every route
 * and mount: an ApiError (AccountError included) as it is; framework-level
 * failures (body limit, parse errors) mapped; Redis or PostgreSQL out of
 * reach, or the SQLite file locked past its busy timeout, on any route, the
 * 503 a client retries; anything else a 500.
 */
function toApiError(error: FastifyError | Error, bodyLimit: number, route: string | undefined): ApiError {
  if (error instanceof ApiError) return error;
  // The API's routes refuse to admit; the dashboard's and the admin API's neither read nor change anything.
  const unavailable = dependencyFailure(error, route !== undefined && isApiPath(route) ? "admission" : "other");
  if (unavailable !== undefined) return unavailable;
  const e = error as FastifyError;
  if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") return errors.requestTooLarge(bodyLimit);
  if (e.code === "FST_ERR_CTP_EMPTY_JSON_BODY") return errors.invalidJson("the body is empty");
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new ApiError(e.statusCode, "invalid_request_error", "invalid_request", e.message);
  }
  return errors.internal();
}

/**
 * A hop count trusts that many proxies nearest the server, the connecting peer
 * included (Fastify 5 alone would trust none for a number), as Express does.
 */
const trustHops =
  (hops: number) =>
  (_address: string, hop: number): boolean =>
    hop < hops;

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const httpLimits = options.http ?? DEFAULT_HTTP_LIMITS;
  const secrets = new PastedSecrets(options.adminToken);
  const requestIdFor = requestIds(secrets);
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Fastify's own request lines are off: we write one richer line per request.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    bodyLimit: options.bodyLimit,
    trustProxy: typeof options.trustProxy === "number" ? trustHops(options.trustProxy) : (options.trustProxy ?? false),
    ...serverOptions(httpLimits),
    clientErrorHandler: clientErrorHandler(httpLimits, options.telemetry ?? NO_TELEMETRY),
    // A request arriving while the server closes goes through our hooks (the lifecycle answers it
    // 503 overloaded, in the catalogue's shape), not Fastify's bare 503.
    return503OnClosing: false,
    // Answered before any hook (a malformed URL): observed here, so it has its line and metric too.
    frameworkErrors: (error, request, reply) => {
      observe(request, reply);
      frameworkErrorHandler(error, request, reply);
    },
    childLoggerFactory: (logger, bindings, childOptions) =>
      new LazyChildLogger(logger as unknown as Logger, bindings, childOptions as ChildLoggerOptions) as unknown as FastifyBaseLogger,
    genReqId: requestIdFor,
  });
  capConnections(app.server, httpLimits.maxConnections);
  cutStalledReaders(app.server, httpLimits.streamStallMs);
  guardServer(app.server, { log: app.log, telemetry: options.telemetry ?? NO_TELEMETRY }, requestIdFor);
  app.decorateRequest("caller", undefined);
  app.decorateRequest("refusedCaller", undefined);
  app.decorateRequest("logFields", undefined as never);
  app.decorateRequest("generationDone", undefined);
  app.decorateRequest("closeAbort", undefined);
  app.decorateRequest("trace", undefined as never);
  const telemetry = options.telemetry ?? NO_TELEMETRY;
  // The request line carries only the fields named below (ids, route, status, counts), none of them
  // a redacted path, so it skips the redaction pass (~2.7 µs a line, ~2% of a gateway request).
  const requestLines = options.logger.child({}, { redact: [] });

  // Every body is read as JSON whatever its content type: `curl -d` without a
  // header should work, and a wrong body should say why in our error shape.
  app.removeAllContentTypeParsers();
  const parseJson = (req: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void => {
    // An unknown route's body or a preflight's is not parsed: never a body error, nor the work of parsing one.
    if (bodyUnused(req)) return done(null, undefined);
    const text = body as string;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      // A byte-order mark before the JSON (Windows tools write one) is ignored, as JSON's RFC lets a parser do;
      // it was a 400 quoting an invisible character. Looked for only here, off the usual path.
      // One mark only: a body of marks is no JSON, and stripping them one parse at a time would cost quadratic time.
      if (text.charCodeAt(0) === 0xfeff && text.charCodeAt(1) !== 0xfeff) return parseJson(req, text.slice(1), done);
      // Whitespace is no JSON either: checked only here, so a body is not copied by trim() per request.
      if (text.trim().length === 0) return done(null, undefined);
      return done(errors.invalidJson((error as Error).message), undefined);
    }
    done(null, parsed);
  };
  app.addContentTypeParser("*", { parseAs: "string" }, parseJson);
  // The same parser by name for the usual type: Fastify caches a named type's parser per header value,
  // while the catch-all is looked up by parsing the content type anew on every request.
  app.addContentTypeParser("application/json", { parseAs: "string" }, parseJson);

  // Before a body is read as JSON: an unparseable Content-Type is set aside, and a compressed body
  // (Content-Encoding gzip, deflate or br) decoded.
  app.addHook("preParsing", (request, reply, payload, done) => {
    // A Content-Type Fastify cannot parse (`a b`, empty, `/`) would be refused 415 before any parser
    // runs. Such a body is read as JSON too, as if it came without the header: the route sees none
    // either, so the dashboard's CSRF check still refuses it as not JSON. (For a parseable type,
    // mediaType is what Fastify would compute next anyway, and keeps.)
    if (request.raw.headers["content-type"] !== undefined && request.mediaType === undefined) request.headers = { "content-type": undefined };
    try {
      const body = decodedBody(request, reply, payload);
      // Only once the body's coding is known to be read (an unsupported one, or no decoder free, is refused first).
      continueIfRead(request, reply);
      done(null, body);
    } catch (error) {
      done(error as Error);
    }
  });

  // One synchronous hook rather than two async ones: no promise per hook per request.
  app.addHook("onRequest", (request, reply, done) => {
    observe(request, reply);
    // What Node would have refused bare (no Host, an unmet Expect): the catalogue's 400, and the connection closed.
    const refusal = unservableRequest(request.raw);
    if (refusal === undefined) return done();
    reply.header("connection", "close");
    done(refusal);
  });

  // Any answer given while draining (a 503 refusal, or a running request's result) closes its connection:
  // the client reconnects (through the balancer, to another node), and no kept-alive connection holds the
  // close until the drain's deadline. Only once the whole body is read: closing with an upload unread
  // would reset it before the client reads the answer.
  app.addHook("onSend", (request, reply, payload, done) => {
    if (options.lifecycle?.current === "draining" && (request.raw.complete || bodiless(request.raw))) reply.header("connection", "close");
    done(null, payload);
  });

  /** The headers, request line, metrics and trace every request gets, whichever way it is answered. */
  function observe(request: FastifyRequest, reply: FastifyReply): void {
    reply.headers(securityHeaders(request.url));
    request.logFields = {};
    reply.header("x-request-id", request.id);
    rememberRequestId(reply.raw, request.id);
    // Route templates only, never raw URLs: metric labels and span names stay bounded.
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    request.trace = telemetry.startTrace(request.method, route, request.headers);
    // Fastify skips onResponse for a hijacked stream whose client left, so the
    // line is written when the socket response closes, whichever way it ends.
    const started = performance.now();
    // Read now: once a client has gone, its socket no longer has an address.
    const clientIp = request.ip;
    const finished = (): void => {
      // A body the client never finished sending is a client gone too, unless a timeout answered it first.
      const answered = clientErrorAnswer(reply.raw);
      if (answered !== undefined) request.logFields.code = answered.code;
      const status = request.logFields.shutdown_cut
        ? SHUTDOWN_CUT_STATUS
        : request.logFields.aborted
          ? CLIENT_CLOSED
          : (answered?.status ?? (bodyCutShort(request) ? CLIENT_CLOSED : reply.raw.statusCode));
      const latencyMs = performance.now() - started;
      logRequest(requestLines, request, status, latencyMs, clientIp, secrets);
      telemetry.httpRequest(route, status, latencyMs / 1000);
      request.trace.end({ "http.response.status_code": status, "http.request.id": request.id });
    };
    reply.raw.once("close", () => {
      // While draining, a connection kept alive past its last answer would hold the close to the deadline
      // (a stream's head, written before the drain, could not say `Connection: close`).
      if (options.lifecycle?.current === "draining") app.server.closeIdleConnections();
      abortIfClosedEarly(request, reply);
      // After the generation settles, whichever way: one promise, not a chain of three.
      if (request.generationDone === undefined) finished();
      else request.generationDone.then(finished, finished);
    });
  }

  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    // The client left before its body arrived (it closed, or a timeout already answered it): the
    // error is the unfinished body's, so nothing of ours failed and nothing can be answered.
    if (bodyCutShort(request) && !(error instanceof ApiError)) return reply.code(CLIENT_CLOSED).send();
    // A route may hold bodies to less than the server's limit (the dashboard's): the 413 names the one it passed.
    const bodyLimit = request.routeOptions.bodyLimit ?? options.bodyLimit;
    const apiError = toApiError(error, bodyLimit, request.routeOptions.url);
    if (apiError.code === "request_too_large") drainRefusedBody(request, reply, drainLimit(bodyLimit));
    request.logFields.code = apiError.code;
    if (GATE_ERROR_TYPES.has(apiError.type)) telemetry.gateRejection(apiError.code);
    if (!reportFailure(apiError, request.log, telemetry, options.logger) && apiError.status >= 500 && !(error instanceof ApiError)) {
      request.log.error({ err: error }, "unhandled error");
    }
    return reply.code(apiError.status).headers(apiError.headers).send(apiError.toBody());
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "/";
    const e = errors.notFound(request.method, secrets.without(path), notFoundHint(app, request.method, path, secrets));
    request.logFields.code = e.code;
    return reply.code(e.status).send(e.toBody());
  });

  await app.register(healthRoute, { version: options.version });
  await app.register(apiDocsRoutes, { version: options.version });
  await app.register(iconRoute);
  if (options.readiness !== undefined) await app.register(readyRoute(options.readiness));
  await app.register(corsPreflight);
  await app.register(
    async (v1) => {
      const authenticate = authenticationHook(options.gate);
      v1.addHook("onSend", limitHeadersHook(options.gate));
      // Callback-style: one promise per request (the gate's), not a second for an async hook.
      // Refused while starting, at once; while draining, once the body is read (preHandler) when there is one,
      // so that its 503 can close the connection without cutting an upload the client has not finished.
      v1.addHook("preHandler", (_request, _reply, done) => {
        options.lifecycle?.admitNewWork();
        done();
      });
      v1.addHook("onRequest", (request, _reply, done) => {
        if (options.lifecycle?.current !== "draining" || bodiless(request.raw)) options.lifecycle?.admitNewWork();
        const span = request.trace.span("authentication");
        // Whatever throws, in the gate or in ending the span, reaches Fastify's error handler through done().
        authenticate(request)
          .then(
            () => span.end(),
            (error: Error) => {
              span.end(error);
              throw error;
            },
          )
          .then(
            () => done(),
            (error: Error) => done(error),
          );
      });
      await v1.register(modelsRoute, options);
      await v1.register(inferRoute, options);
      await v1.register(chatCompletionsRoute, options);
      await v1.register(embeddingsRoute, options);
      for (const plugin of options.v1Routes ?? []) await v1.register(async (scope) => plugin(scope));
    },
    { prefix: "/v1" },
  );
  for (const { prefix, plugin } of options.mounts ?? []) await app.register(async (scope) => plugin(scope), { prefix });
  return app;
}

/** The one line per request: id, route, status, error code, latency, specialist, tokens, caller. */
function logRequest(log: Logger, request: FastifyRequest, status: number, latencyMs: number, clientIp: string, secrets: PastedSecrets): void {
  log.info(
    {
      request_id: request.id,
      method: request.method,
      // An unmatched route is logged as asked for: a key someone put in the path is cut to its prefix, the admin token replaced.
      // Cut to 512 characters after that: a client's 16 KB path would otherwise make a 16 KB line, request after request.
      route: request.routeOptions.url ?? shortenedTo(secrets.without(withoutQuery(request.url)), MAX_LOGGED_PATH),
      status,
      latency_ms: Math.round(latencyMs * 10) / 10,
      ...request.logFields,
      // Who asked, by id only (never the key), and from where (request.ip honours the trusted-proxy setting).
      account_id: request.caller?.accountId ?? request.refusedCaller?.accountId,
      key_id: request.caller?.keyId ?? request.refusedCaller?.keyId,
      client_ip: clientIp,
    },
    "request",
  );
}
