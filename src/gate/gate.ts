import type { FastifyReply, FastifyRequest } from "fastify";

/** Who is calling, once the gate has authenticated the request. */
export interface Caller {
  accountId: string;
  keyId: string;
  mode: "live" | "test";
  plan: string;
}

/** How an admitted inference request ended, for metering and quota. */
export interface Outcome {
  status: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
}

/** A request let through to an engine; `finish` must be called exactly once when it ends. */
export interface Admission {
  finish(outcome: Outcome): Promise<void>;
}

export type Endpoint = "infer" | "chat.completions" | "embeddings";

/**
 * What stands in front of the /v1 routes: authentication, plan, limits and
 * metering. The routes only call these three methods, so an open gate (no
 * accounts) and the full gate are interchangeable.
 */
export interface Gate {
  /** Runs before every /v1 handler; throws 401 or sets headers. */
  authenticate(request: FastifyRequest, reply: FastifyReply): Promise<Caller | undefined>;
  /** Whether the caller may use the specialist (models list, 403 check). */
  allows(caller: Caller | undefined, specialistId: string): boolean;
  /** Checks plan, minute limit and monthly quota, and counts the request; throws 403/429. */
  admit(request: FastifyRequest, reply: FastifyReply, caller: Caller | undefined, specialistId: string, endpoint: Endpoint): Promise<Admission>;
  close(): Promise<void>;
}

const NO_ADMISSION: Admission = { finish: () => Promise.resolve() };

/** Lets every request through: the server before accounts exist, and the gate-off benchmark baseline. */
export const openGate: Gate = {
  authenticate: () => Promise.resolve(undefined),
  allows: () => true,
  admit: () => Promise.resolve(NO_ADMISSION),
  close: () => Promise.resolve(),
};
