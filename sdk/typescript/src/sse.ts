/** An event (or a line) longer than the reader's bound: the stream is read no further. */
export class SseEventTooLargeError extends Error {
  override name = "SseEventTooLargeError";
}

/** One server-sent event: its `event` field ("message" when it has none) and its `data`. */
export interface SseEvent {
  event: string;
  data: string;
}

/** Reads a text/event-stream body and yields each event's `data` field (see readSseEvents). */
export async function* readSseData(body: AsyncIterable<Uint8Array>, maxEventChars = Infinity): AsyncGenerator<string> {
  for await (const event of readSseEvents(body, maxEventChars)) yield event.data;
}

/**
 * Reads a text/event-stream body and yields each event with data. Works on
 * any async iterable of bytes (a Node stream, a fetch body), so the remote
 * engine and the SDK read streams the same way. `maxEventChars` bounds what one
 * event may hold in memory (a server that never ends a line would otherwise grow it without end).
 */
export async function* readSseEvents(body: AsyncIterable<Uint8Array>, maxEventChars = Infinity): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let dataChars = 0;
  // How much of the buffer is known to hold no line end: a long line is not searched again from its start per read.
  let scanned = 0;
  const lineEnd = /\r\n|\r|\n/g;
  // A line that ended in a CR at the end of a read: an LF at the start of the next read belongs to it
  // (one CRLF split across two reads is one line end, not two: two would end the event early).
  let crEnded = false;
  const lines = function* (final: boolean): Generator<string> {
    if (crEnded && buffer.startsWith("\n")) buffer = buffer.slice(1);
    if (buffer.length > 0) crEnded = false;
    let end: RegExpExecArray | null;
    while (((lineEnd.lastIndex = scanned), (end = lineEnd.exec(buffer))) !== null) {
      const nl = end.index;
      const line = buffer.slice(0, nl);
      crEnded = nl === buffer.length - 1 && buffer[nl] === "\r";
      buffer = buffer.slice(nl + end[0].length);
      scanned = 0;
      yield line;
    }
    scanned = buffer.length;
    if (scanned + dataChars > maxEventChars) throw new SseEventTooLargeError(`an event over ${maxEventChars} characters`);
    if (final && buffer.length > 0) {
      yield buffer;
      buffer = "";
      scanned = 0;
    }
  };
  const take = function* (line: string): Generator<SseEvent> {
    if (line === "") {
      if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
      data = [];
      dataChars = 0;
      event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    if (field === "data") {
      data.push(value);
      dataChars += value.length + 1;
      if (dataChars > maxEventChars) throw new SseEventTooLargeError(`an event over ${maxEventChars} characters`);
    }
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (const line of lines(false)) yield* take(line);
  }
  buffer += decoder.decode();
  for (const line of lines(true)) yield* take(line);
  if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
}
