import type { FastifyReply, FastifyRequest } from "fastify";
import type { Caller } from "../gate/gate.js";
import type { AbortSource } from "../engines/types.js";
import type { LogFields } from "../inference/run-inference.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the gate's authentication hook on /v1 routes. */
    caller: Caller | undefined;
    /** A found key the gate refused (revoked, suspended account, plan gone): its ids, for the log line only. */
    refusedCaller: { accountId: string; keyId: string } | undefined;
    /** Fields the one log line of this request carries besides id, route, status and latency. */
    logFields: LogFields;
    /**
     * Settles when the request's generation has ended. A client that leaves
     * closes the response first; the log line waits for the tokens it cost.
     */
    generationDone: Promise<unknown> | undefined;
    /** Set by `requestAbort`, read when the response closes; null once it closed early. */
    closeAbort: CloseAbort | null | undefined;
  }
}

/**
 * A request's abort: fired when the client goes away before the response is
 * complete, or when the server shuts down; either way generation must stop.
 * Its AbortSignal is made only when something reads it: the remote engine
 * watches the abort directly, and an AbortController with a listener on its
 * signal was ~3% of a gateway request's CPU.
 */
export class RequestAbort implements AbortSource {
  aborted = false;
  reason: unknown;
  private controller: AbortController | undefined;
  private listeners: Array<(reason: unknown) => void> | undefined;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) listener(reason);
  }

  watch(onAbort: (reason: unknown) => void): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(onAbort);
  }

  unwatch(onAbort: (reason: unknown) => void): void {
    const at = this.listeners?.indexOf(onAbort) ?? -1;
    if (at >= 0) this.listeners!.splice(at, 1);
  }
}

/** What aborts a request when its response closes early; set once the request asks for its abort. */
export interface CloseAbort {
  abort: RequestAbort;
  inFlight: Set<RequestAbort>;
}

/**
 * The request's abort (see RequestAbort). The response's close is watched by
 * the listener the app adds to every request (`abortIfClosedEarly`), not by
 * one more listener per request.
 */
export function requestAbort(request: FastifyRequest, shutdown: AbortSignal): RequestAbort {
  const abort = new RequestAbort();
  if (shutdown.aborted) {
    abort.abort(shutdown.reason);
    return abort;
  }
  // The client left while the request was being admitted: nothing will close the response again.
  if (request.closeAbort === null) {
    abort.abort(new Error("client disconnected"));
    return abort;
  }
  const inFlight = inFlightUntil(shutdown);
  inFlight.add(abort);
  request.closeAbort = { abort, inFlight };
  return abort;
}

/** `requestAbort` as an AbortSignal, for callers that pass a signal on. */
export const requestSignal = (request: FastifyRequest, shutdown: AbortSignal): AbortSignal => requestAbort(request, shutdown).signal;

/** Called when the response closes: the response closes early exactly when the connection went away under it. */
export function abortIfClosedEarly(request: FastifyRequest, reply: FastifyReply): void {
  const closing = request.closeAbort;
  request.closeAbort = reply.raw.writableFinished ? undefined : null;
  if (closing === undefined || closing === null) return;
  closing.inFlight.delete(closing.abort);
  if (!reply.raw.writableFinished) closing.abort.abort(new Error("client disconnected"));
}

/**
 * The requests in flight per shutdown signal, aborted together by one listener:
 * an EventTarget listener added and removed per request cost more than a Set.
 * (Not AbortSignal.any: on Node 20 its combined signal can miss a source's abort.)
 */
const inFlightBySignal = new WeakMap<AbortSignal, Set<RequestAbort>>();

function inFlightUntil(shutdown: AbortSignal): Set<RequestAbort> {
  let inFlight = inFlightBySignal.get(shutdown);
  if (inFlight === undefined) {
    const aborts = new Set<RequestAbort>();
    inFlight = aborts;
    inFlightBySignal.set(shutdown, aborts);
    shutdown.addEventListener(
      "abort",
      () => {
        for (const abort of aborts) abort.abort(shutdown.reason);
        aborts.clear();
      },
      { once: true },
    );
  }
  return inFlight;
}
