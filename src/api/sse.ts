/** One SSE reader for the SDK and the remote engine. */
export { readSseData, readSseEvents, SseEventTooLargeError } from "../../sdk/typescript/src/sse.js";
