import type { FastifyReply } from "fastify";
import type { Caller } from "../gate/gate.js";
import type { LogFields } from "../inference/run-inference.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the gate's authentication hook on /v1 routes. */
    caller: Caller | undefined;
    /** Fields the one log line of this request carries besides id, route, status and latency. */
    logFields: LogFields;
    /**
     * Settles when the request's generation has ended. A client that leaves
     * closes the response first; the log line waits for the tokens it cost.
     */
    generationDone: Promise<unknown> | undefined;
  }
}

/**
 * An AbortSignal that fires when the client goes away before the response is
 * complete, or when the server shuts down: either way generation must stop.
 */
export function requestSignal(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  const inFlight = inFlightUntil(shutdown);
  if (shutdown.aborted) controller.abort(shutdown.reason);
  else inFlight.add(controller);
  // One listener for both: the response closes early exactly when the connection went away under it.
  reply.raw.once("close", () => {
    inFlight.delete(controller);
    if (!reply.raw.writableFinished) controller.abort(new Error("client disconnected"));
  });
  return controller.signal;
}

/**
 * The requests in flight per shutdown signal, aborted together by one listener:
 * an EventTarget listener added and removed per request cost more than a Set.
 * (Not AbortSignal.any: on Node 20 its combined signal can miss a source's abort.)
 */
const inFlightBySignal = new WeakMap<AbortSignal, Set<AbortController>>();

function inFlightUntil(shutdown: AbortSignal): Set<AbortController> {
  let inFlight = inFlightBySignal.get(shutdown);
  if (inFlight === undefined) {
    const controllers = new Set<AbortController>();
    inFlight = controllers;
    inFlightBySignal.set(shutdown, controllers);
    shutdown.addEventListener(
      "abort",
      () => {
        for (const controller of controllers) controller.abort(shutdown.reason);
        controllers.clear();
      },
      { once: true },
    );
  }
  return inFlight;
}
