import type { FastifyReply, FastifyRequest } from "fastify";
import type { InferenceRequest } from "../inference/run-inference.js";
import type { AppOptions } from "./app.js";
import { admitRequest } from "./gate-adapter.js";
import { requestAbort } from "./request-context.js";

/**
 * An HTTP request as the inference use case sees it: the gate's headers, the log line and the connection stay here.
 * `cut` ends a stream the drain's deadline stopped; a whole answer has none (its client is answered the cut's 503).
 */
export function inferenceRequest(options: AppOptions, request: FastifyRequest, reply: FastifyReply, cut?: () => void): InferenceRequest {
  return {
    trace: request.trace,
    logFields: request.logFields,
    logError: (error, message) => request.log.error({ err: error }, message),
    admit: (specialistId, endpoint, admitOptions) => admitRequest(options.gate, request, reply, specialistId, endpoint, admitOptions),
    abort: () => requestAbort(request, options.shutdown),
    generationStarted: (generation) => {
      request.generationDone = generation;
    },
    cut,
  };
}
