/** A prompt left (partly) unevaluated because its request was aborted (client gone, drain deadline) before a chunk. */
export class PromptAbandoned extends Error {
  constructor() {
    super("prompt evaluation abandoned: the request was aborted");
  }
}
