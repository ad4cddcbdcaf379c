export { Alveare, ChatCompletionStream, type ClientOptions, type RequestOptions } from "./client.js";
export * from "./errors.js";
export { retryDelayMs, serverDelayMs, shouldRetry } from "./retry.js";
export type * from "./types.js";
export { MODEL_PREFIX } from "./types.js";
