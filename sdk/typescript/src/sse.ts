/**
 * Reads a text/event-stream body and yields each event's `data` field. Works on
 * any async iterable of bytes (a Node stream, a fetch body), so the remote
 * engine and the SDK read streams the same way.
 */
export async function* readSseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  // A line that ended in a CR at the end of a read: an LF at the start of the next read belongs to it
  // (one CRLF split across two reads is one line end, not two: two would end the event early).
  let crEnded = false;
  const lines = function* (final: boolean): Generator<string> {
    if (crEnded && buffer.startsWith("\n")) buffer = buffer.slice(1);
    if (buffer.length > 0) crEnded = false;
    let nl: number;
    while ((nl = buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = buffer.slice(0, nl);
      crEnded = nl === buffer.length - 1 && buffer[nl] === "\r";
      buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
      yield line;
    }
    if (final && buffer.length > 0) {
      yield buffer;
      buffer = "";
    }
  };
  const take = function* (line: string): Generator<string> {
    if (line === "") {
      if (data.length > 0) yield data.join("\n");
      data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (const line of lines(false)) yield* take(line);
  }
  buffer += decoder.decode();
  for (const line of lines(true)) yield* take(line);
  if (data.length > 0) yield data.join("\n");
}
