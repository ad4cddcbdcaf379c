import { ApiError, errors, shortenedTo } from "../../errors.js";

/** An upstream error body's fields, as OpenAI-compatible servers write them (vLLM's `code` is the HTTP status, a number). */
interface UpstreamErrorFields {
  code?: unknown;
  type?: unknown;
  param?: unknown;
}

/**
 * The request fields an upstream may name in `param` that are the client's under the same name. `max_tokens` is
 * left out: the client may have sent `max_completion_tokens`, which the upstream hears as `max_tokens`.
 * `temperature` and `top_p` are sent from the specialist's defaults when the client gives none: named all the same.
 */
const CLIENT_FIELDS = new Set([
  "messages",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "response_format",
  "stop",
  "seed",
  "n",
  "logprobs",
  "top_logprobs",
  "temperature",
  "top_p",
]);

function errorFieldsOf(text: string): UpstreamErrorFields {
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    return typeof error === "object" && error !== null ? (error as UpstreamErrorFields) : {};
  } catch {
    return {};
  }
}

/**
 * Whether an upstream refused a prompt over its context: OpenAI and Alveare say so in `code`, llama-server in
 * `type`, vLLM only in words ("This model's maximum context length is 4096 tokens. However, you requested …"),
 * and TGI too ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: …").
 */
function overContext(fields: UpstreamErrorFields, said: string): boolean {
  return (
    fields.code === "context_length_exceeded" ||
    fields.type === "exceed_context_size_error" ||
    /maximum context length|`inputs` tokens \+ `max_new_tokens` must be <=/i.test(said)
  );
}

/**
 * The parameter a refusal names: the upstream's own, cut to its top-level field (an index inside `messages`
 * counts the specialist's system prompt, which the client never sent), where the client sent that field too.
 */
function refusedParam(fields: UpstreamErrorFields): string {
  const root = typeof fields.param === "string" ? /^[a-z_]+/.exec(fields.param)?.[0] : undefined;
  return root !== undefined && CLIENT_FIELDS.has(root) ? root : "messages";
}

/**
 * An upstream's 400 in the catalogue's terms, its words (`said`, already bounded and without our key) passed on.
 * A prompt over the upstream's context is `context_length_exceeded`, as an embedded specialist answers it, so a
 * client that shortens its history on that code works on remote specialists too. An upstream that does not know
 * the configured model (an Alveare upstream answers that with 400 `model_not_found`) is the operator's matter,
 * never the client's request: 502, as the 404 other servers give for it.
 */
export function upstreamRefusal(text: string, said: string): ApiError {
  const fields = errorFieldsOf(text);
  if (fields.code === "model_not_found") return errors.upstream(502, "The upstream engine does not serve the model this specialist names.");
  const reason = `the upstream engine refused the request: ${shortenedTo(said, 300)}`;
  if (overContext(fields, said)) {
    return new ApiError(400, "invalid_request_error", "context_length_exceeded", `The prompt does not fit: ${reason}`, "messages");
  }
  return errors.invalidParameter(refusedParam(fields), reason);
}
