export {
  Alveare,
  ChatCompletionStream,
  DEFAULT_BASE_URL,
  normalizeBaseURL,
  type ClientOptions,
  type RequestOptions,
  type RetryEvent,
  type WithRequestId,
} from "./client.js";
export * from "./errors.js";
export { retryDelayMs, serverDelayMs, shouldRetry } from "./retry.js";
export type * from "./types.js";
export { MODEL_PREFIX } from "./types.js";
export { VERSION } from "./version.js";
