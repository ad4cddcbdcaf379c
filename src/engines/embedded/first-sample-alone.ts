import type { LlamaContext } from "node-llama-cpp";

/** The two calls of node-llama-cpp's native context around a batch's outputs. */
interface NativeOutputCalls {
  decodeBatch(): Promise<unknown>;
  sampleToken(...args: unknown[]): Promise<unknown>;
}

function isNativeOutputCalls(value: unknown): value is NativeOutputCalls {
  if (typeof value !== "object" || value === null) return false;
  const calls = value as Partial<Record<keyof NativeOutputCalls, unknown>>;
  return typeof calls.decodeBatch === "function" && typeof calls.sampleToken === "function";
}

/**
 * Lets the first sample after each batch run alone, before the other sequences' samples.
 *
 * Why: with several sequences, llama.cpp splits a batch by sequence, so its outputs can come out in
 * another order than the batch's (a sequence evaluating several prompt tokens beside others' single
 * tokens is enough). It records the swaps that put them back and applies them lazily, in the first
 * `llama_get_logits_ith` after the batch, without a lock. node-llama-cpp samples each sequence in its
 * own thread-pool worker, and each worker calls `llama_get_logits_ith`: two of them applying the
 * swaps at once leave rows in each other's places, and a request samples from another request's
 * distribution (seen as concurrent answers that differ from the same requests asked alone). Once the
 * first sample has applied them, the rest read the outputs in parallel safely.
 *
 * node-llama-cpp 3.21.1 offers no hook for this, so the context's two native calls are wrapped, as
 * for the per-phase threads. Returns false, changing nothing, when the context's internals are not
 * the expected shape (another node-llama-cpp version).
 */
export function sampleFirstAlone(context: LlamaContext): boolean {
  const native: unknown = (context as unknown as { _ctx?: unknown })._ctx;
  if (!isNativeOutputCalls(native)) return false;
  const decodeBatch = native.decodeBatch.bind(native);
  const sampleToken = native.sampleToken.bind(native);
  /** A batch was decoded and no sample has read its outputs yet. */
  let unread = false;
  /** The first sample of the last batch, while it runs. */
  let first: Promise<unknown> | undefined;
  try {
    // The native methods live on the prototype as read-only properties: shadow them on this instance.
    Object.defineProperty(native, "decodeBatch", {
      configurable: true,
      value: async (): Promise<unknown> => {
        const decoded = await decodeBatch();
        unread = true;
        return decoded;
      },
    });
    Object.defineProperty(native, "sampleToken", {
      configurable: true,
      value: (...args: unknown[]): Promise<unknown> => {
        if (first !== undefined) {
          const after = (): Promise<unknown> => sampleToken(...args);
          return first.then(after, after);
        }
        if (!unread) return sampleToken(...args);
        unread = false;
        const sampled = sampleToken(...args);
        first = sampled;
        const done = (): void => {
          if (first === sampled) first = undefined;
        };
        sampled.then(done, done);
        return sampled;
      },
    });
  } catch {
    Reflect.deleteProperty(native, "decodeBatch");
    return false;
  }
  return true;
}
