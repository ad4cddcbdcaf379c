import type { LlamaContext } from "node-llama-cpp";
import type { ThreadChoice } from "./thread-calibration.js";

/** The two calls of node-llama-cpp's native context that frame every batch. */
interface NativeBatchCalls {
  initBatch(size: number): void;
  setThreads(threads: number): void;
}

function isNativeBatchCalls(value: unknown): value is NativeBatchCalls {
  if (typeof value !== "object" || value === null) return false;
  const calls = value as Partial<Record<keyof NativeBatchCalls, unknown>>;
  return typeof calls.initBatch === "function" && typeof calls.setThreads === "function";
}

/**
 * Uses the prompt-processing thread count for batches that carry prompt tokens
 * and the decoding count for the rest.
 *
 * node-llama-cpp 3.21.1 has no public way to do this: a context has one thread
 * count, and its native setThreads sets llama.cpp's n_threads and
 * n_threads_batch to the same value (llama.cpp itself would use n_threads_batch
 * for multi-token batches). What it does do is call setThreads(allowed) right
 * before every decodeBatch, after initBatch(size), from a single batch loop per
 * context; `allowed` is what its thread splitter grants (at most the context's
 * thread count). So this wraps those two native calls on the context and picks
 * by the batch's size: more tokens than sequences means prompt tokens are in it.
 * One batch is one llama_decode over all its sequences, so the count applies to
 * the whole batch, which is what makes switching per batch safe with several
 * sequences decoding together. Returns false, changing nothing, when the
 * context's internals are not the expected shape (another node-llama-cpp version).
 */
export function usePhaseThreads(context: LlamaContext, threads: ThreadChoice): boolean {
  const native: unknown = (context as unknown as { _ctx?: unknown })._ctx;
  if (!isNativeBatchCalls(native)) return false;
  const initBatch = native.initBatch.bind(native);
  const setThreads = native.setThreads.bind(native);
  const decodeBatchMax = context.totalSequences;
  let batchSize = 1;
  // The native methods live on the prototype as read-only properties: shadow them on this instance.
  try {
    Object.defineProperty(native, "initBatch", {
      configurable: true,
      value: (size: number): void => {
        batchSize = size;
        initBatch(size);
      },
    });
    Object.defineProperty(native, "setThreads", {
      configurable: true,
      value: (allowed: number): void => {
        const wanted = batchSize > decodeBatchMax ? threads.prompt : threads.decode;
        // 0 from the splitter means "no limit".
        setThreads(allowed > 0 ? Math.min(allowed, wanted) : wanted);
      },
    });
  } catch {
    Reflect.deleteProperty(native, "initBatch");
    return false;
  }
  return true;
}
