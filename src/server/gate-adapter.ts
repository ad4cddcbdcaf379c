import type { FastifyReply, FastifyRequest, onSendHookHandler } from "fastify";
import { ApiError } from "../errors.js";
import type { LimitReport, LimitState } from "../gate/backends.js";
import type { Admission, AdmitOptions, Endpoint, Gate } from "../gate/gate.js";

const resetSeconds = (state: LimitState): string => String(Math.ceil(state.resetMs / 1000));

/** The x-ratelimit-* headers of a key's windows, in OpenAI's names; the token ones only where the plan caps tokens. */
export function setLimitHeaders(reply: FastifyReply, limits: LimitReport | undefined): void {
  if (limits === undefined) return;
  const { requests, tokens } = limits;
  reply.header("x-ratelimit-limit-requests", String(requests.limit));
  reply.header("x-ratelimit-remaining-requests", String(Math.max(0, requests.remaining)));
  reply.header("x-ratelimit-reset-requests", resetSeconds(requests));
  if (tokens === undefined) return;
  reply.header("x-ratelimit-limit-tokens", String(tokens.limit));
  reply.header("x-ratelimit-remaining-tokens", String(Math.max(0, tokens.remaining)));
  reply.header("x-ratelimit-reset-tokens", resetSeconds(tokens));
}

/** The /v1 onRequest hook: authenticates the caller, consuming nothing; its windows are shown by `limitHeadersHook`. */
export const authenticationHook =
  (gate: Gate) =>
  async (request: FastifyRequest): Promise<void> => {
    try {
      const authenticated = await gate.authenticate(request.headers.authorization, { limits: false });
      request.caller = authenticated?.caller;
    } catch (error) {
      if (error instanceof ApiError) request.refusedCaller = error.refusedCaller;
      throw error;
    }
  };

/**
 * The /v1 onSend hook: an authenticated response that the gate's admission
 * did not already give its windows (models, usage, a request refused before
 * the limiter) shows them as they stand. Looked up here rather than at
 * authentication, so an admitted request costs one limiter step, not two.
 */
export const limitHeadersHook =
  (gate: Gate): onSendHookHandler =>
  (request, reply, payload, done): void => {
    // An admitted request's response has its windows already: it passes without a promise. One refused because the
    // limiter's store is out of reach is not held for a second wait on it (a Redis that answers nothing: 2 s more).
    if (request.caller === undefined || reply.hasHeader("x-ratelimit-limit-requests") || request.logFields.code === "dependency_unavailable")
      return done(null, payload);
    // Headers are informative: a limiter that cannot answer now leaves them out rather than failing the response.
    gate
      .limits(request.caller)
      .then((limits) => setLimitHeaders(reply, limits))
      .catch(() => undefined)
      .then(() => done(null, payload));
  };

/** Asks the gate to admit the request: sets the window headers either way and throws the gate's error on a refusal. */
export async function admitRequest(
  gate: Gate,
  request: FastifyRequest,
  reply: FastifyReply,
  specialistId: string,
  endpoint: Endpoint,
  options?: AdmitOptions,
): Promise<Admission> {
  const decision = await gate.admit(request.caller, specialistId, endpoint, request.id, options);
  setLimitHeaders(reply, decision.limits);
  if (!decision.admitted) throw decision.error;
  return decision.admission;
}
