import type { GenerationRequest } from "../types.js";
import { documentedTools } from "../tools.js";

/**
 * What an upstream's token counts are worth to metering. A count is taken only as a whole, non-negative
 * number: a string would be concatenated into the totals, a negative one would credit the account.
 */
export const tokenCount = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;

/**
 * Bytes of UTF-8 text per token, for estimating what an upstream did not count (its tokenizer is not ours
 * to run). BPE vocabularies spend about 4 bytes a token on English, about 3 on code, JSON and CJK
 * (3 bytes a character, about one token each): 3 leans towards counting more, never towards free usage.
 */
const BYTES_PER_TOKEN = 3;
/** Role markers and separators a chat template adds per message, and once for the assistant's opening (OpenAI's own rule of thumb). */
const TOKENS_PER_MESSAGE = 4;
const TOKENS_PER_PROMPT = 3;

/** Estimated tokens of a text an upstream produced or read without counting it. */
export const estimatedTokens = (text: string): number => Math.ceil(Buffer.byteLength(text, "utf8") / BYTES_PER_TOKEN);

/** The texts of a request the upstream reads: messages (tool calls included) and tools. */
function* promptTexts(req: GenerationRequest): Generator<string> {
  for (const m of req.messages) {
    yield m.content;
    for (const call of m.toolCalls ?? []) yield* [call.name, call.arguments];
  }
  const tools = documentedTools(req);
  if (tools !== undefined) yield JSON.stringify(tools);
}

/** Estimated prompt tokens of a request, as the upstream sees it: messages (tool calls included) and tools. */
export function estimatedPromptTokens(req: GenerationRequest): number {
  let tokens = TOKENS_PER_PROMPT + TOKENS_PER_MESSAGE * req.messages.length;
  for (const text of promptTexts(req)) tokens += estimatedTokens(text);
  return tokens;
}

/** What a chat template may add around the messages beyond TEMPLATE_TOKENS_PER_MESSAGE each: a default system prompt, tool instructions. */
export const TEMPLATE_TOKENS = 8192;
const TEMPLATE_TOKENS_PER_MESSAGE = 64;

/**
 * The most prompt tokens an upstream's count is taken for: one per byte of what the upstream reads (no tokenizer
 * spends more), plus what a template adds. A count past it is no count of this prompt (an upstream's bug), and taken
 * as it is it would charge the account without bound (and past 2^53 make its monthly total inexact).
 */
export function promptTokensBound(req: GenerationRequest): number {
  let bytes = TEMPLATE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * req.messages.length;
  for (const text of promptTexts(req)) bytes += Buffer.byteLength(text, "utf8");
  return bytes;
}

/** The usage fields an upstream left out (or sent as no count), for the operator's warning. */
export function missingCounts(usage: { prompt_tokens?: unknown; completion_tokens?: unknown } | null | undefined): string[] {
  const missing: string[] = [];
  if (tokenCount(usage?.prompt_tokens) === undefined) missing.push("prompt_tokens");
  if (tokenCount(usage?.completion_tokens) === undefined) missing.push("completion_tokens");
  return missing;
}
