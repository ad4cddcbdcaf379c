import type { FastifyReply } from "fastify";
import type { ApiError } from "../errors.js";

/**
 * A text/event-stream response written straight to the socket. Headers go out
 * with the first event, so failures before any output still get a proper status.
 */
export class EventStream {
  private started = false;

  constructor(private readonly reply: FastifyReply) {}

  get isStarted(): boolean {
    return this.started;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(this.reply.getHeaders())) {
      if (value !== undefined) headers[name] = String(value);
    }
    this.reply.raw.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // No Connection header of our own: Node's keeps the connection or, when the client asked, closes it.
      "x-accel-buffering": "no",
    });
  }

  send(event: unknown): void {
    this.start();
    if (!this.reply.raw.destroyed) this.reply.raw.write(`data: ${JSON.stringify(event)}\n\n`);
  }

  done(): void {
    this.start();
    if (!this.reply.raw.destroyed) this.reply.raw.end("data: [DONE]\n\n");
  }

  /** After the headers went out the status cannot change: the error travels as an event. */
  fail(error: ApiError): void {
    if (!this.reply.raw.destroyed) this.reply.raw.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
  }
}
