import type { FastifyReply, FastifyRequest } from "fastify";
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
    /** Set by `requestSignal`, read when the response closes; null once it closed early. */
    closeAbort: CloseAbort | null | undefined;
  }
}

/** What aborts a request's generation when its response closes early; set once the request asks for a signal. */
export interface CloseAbort {
  controller: AbortController;
  inFlight: Set<AbortController>;
}

/**
 * An AbortSignal that fires when the client goes away before the response is
 * complete, or when the server shuts down: either way generation must stop.
 * The response's close is watched by the listener the app adds to every
 * request (`abortIfClosedEarly`), not by one more listener per request.
 */
export function requestSignal(request: FastifyRequest, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  if (shutdown.aborted) {
    controller.abort(shutdown.reason);
    return controller.signal;
  }
  // The client left while the request was being admitted: nothing will close the response again.
  if (request.closeAbort === null) {
    controller.abort(new Error("client disconnected"));
    return controller.signal;
  }
  const inFlight = inFlightUntil(shutdown);
  inFlight.add(controller);
  request.closeAbort = { controller, inFlight };
  return controller.signal;
}

/** Called when the response closes: the response closes early exactly when the connection went away under it. */
export function abortIfClosedEarly(request: FastifyRequest, reply: FastifyReply): void {
  const closing = request.closeAbort;
  request.closeAbort = reply.raw.writableFinished ? undefined : null;
  if (closing === undefined || closing === null) return;
  closing.inFlight.delete(closing.controller);
  if (!reply.raw.writableFinished) closing.controller.abort(new Error("client disconnected"));
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
