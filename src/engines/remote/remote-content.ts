/**
 * An upstream's message content as text. OpenAI's is a string (or null); Mistral's reasoning models send a list
 * of chunks instead, `{"type": "thinking", …}` then `{"type": "text", "text": …}`, whole and streamed. The answer
 * is the text chunks: the thinking is left out, as chat completions have no field for it, and a list passed on
 * would break every client reading OpenAI's string. Anything else reads as no text.
 */
export function upstreamText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const part of content as unknown[]) {
    const chunk = part as { type?: unknown; text?: unknown } | null;
    if (chunk?.type === "text" && typeof chunk.text === "string") text += chunk.text;
  }
  return text;
}
