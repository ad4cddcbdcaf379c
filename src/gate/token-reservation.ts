import type { TokenReservation } from "./gate.js";

/**
 * Tokens a chat template may add around each message (role markers, turn
 * separators) and once around the whole prompt (BOS, the assistant's opening).
 */
const TEMPLATE_TOKENS_PER_MESSAGE = 8;
const TEMPLATE_TOKENS_PER_PROMPT = 16;

/**
 * An upper bound of a prompt's tokens, known before the prompt is formatted
 * and tokenized: every token of a byte-level or byte-fallback vocabulary
 * spans at least one byte of text, so a message's UTF-8 length bounds its
 * tokens, plus the template's own. A prompt longer than the specialist's
 * context is refused before it costs tokens, so the context bounds it too.
 * A part that is not text (a message, a tool's schema) counts by its JSON,
 * which is never shorter than what a template writes of it, whatever fields
 * a message gains.
 * Generous for plain text (about four bytes a token), and settled to the real
 * count when the request ends.
 */
export function promptTokenBound(parts: readonly unknown[], contextLimit?: number): number {
  let bound = TEMPLATE_TOKENS_PER_PROMPT;
  for (const part of parts) {
    const text = typeof part === "string" ? part : (JSON.stringify(part) ?? "");
    bound += Buffer.byteLength(text, "utf8") + TEMPLATE_TOKENS_PER_MESSAGE;
  }
  return contextLimit === undefined ? bound : Math.min(bound, contextLimit);
}

/**
 * Tokens a chat template may spend on instructions around the tools it documents, when the engine
 * cannot count the prompt (an upstream's template is not ours to read): node-llama-cpp's generic
 * format spends ~800, the templates of Llama 3.1 and Qwen 2.5 a few hundred.
 */
export const UNKNOWN_TOOL_DOCUMENTATION_TOKENS = 1024;

/**
 * What a generation may cost at most: the prompt's bound, and max_tokens for each of its `choices`.
 * `promptTokens`, when the engine counted them, is the prompt's exact size; otherwise tools count by
 * their JSON plus the template's instructions around them.
 */
export function tokenReservation(
  request: {
    messages: readonly unknown[];
    tools?: { tools: readonly unknown[] } | undefined;
    shownTools?: readonly unknown[] | undefined;
    maxTokens: number;
    contextLimit?: number | undefined;
  },
  choices = 1,
  promptTokens?: number,
): TokenReservation {
  const tools = request.tools?.tools ?? request.shownTools ?? [];
  const bound =
    promptTokens ??
    (tools.length === 0 ? promptTokenBound(request.messages) : promptTokenBound([...request.messages, ...tools]) + UNKNOWN_TOOL_DOCUMENTATION_TOKENS);
  return {
    promptTokens: request.contextLimit === undefined ? bound : Math.min(bound, request.contextLimit),
    completionTokens: request.maxTokens * choices,
  };
}
