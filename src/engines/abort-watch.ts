import type { AbortSource } from "./types.js";

/** An AbortSignal as an AbortSource (callers that have a signal already). */
export function signalSource(signal: AbortSignal): AbortSource {
  const listeners = new Map<(reason: unknown) => void, () => void>();
  return {
    signal,
    get aborted() {
      return signal.aborted;
    },
    get reason() {
      return signal.reason as unknown;
    },
    watch(onAbort) {
      const listener = (): void => onAbort(signal.reason);
      listeners.set(onAbort, listener);
      signal.addEventListener("abort", listener, { once: true });
    },
    unwatch(onAbort) {
      const listener = listeners.get(onAbort);
      if (listener === undefined) return;
      listeners.delete(onAbort);
      signal.removeEventListener("abort", listener);
    },
  };
}

/**
 * Waits for a paused stream's reader to catch up, or for the request's abort
 * (a shutdown's deadline, the client gone): a paused generation must not hold
 * either up.
 */
export function caughtUpOrAborted(behind: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    void behind.then(done, done);
  });
}
