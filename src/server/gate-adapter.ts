import type { FastifyReply, FastifyRequest } from "fastify";
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

/** The /v1 onRequest hook: authenticates the caller and shows its windows, consuming nothing. */
export const authenticationHook =
  (gate: Gate) =>
  async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const authenticated = await gate.authenticate(request.headers.authorization);
    request.caller = authenticated?.caller;
    setLimitHeaders(reply, authenticated?.limits);
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
