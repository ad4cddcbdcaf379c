import type { RequestTrace } from "./telemetry.js";

declare module "fastify" {
  interface FastifyRequest {
    /** This request's trace (the no-op one when tracing is off). */
    trace: RequestTrace;
  }
}
