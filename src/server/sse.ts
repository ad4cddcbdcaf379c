import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";
import type { ApiError } from "../errors.js";

/** Responses that are event streams: their stalled readers are cut by their own rule (and logged as such). */
const eventStreams = new WeakSet<ServerResponse>();
export const isEventStream = (response: ServerResponse): boolean => eventStreams.has(response);

/**
 * A text/event-stream response written straight to the socket. Headers go out
 * with the first event, so failures before any output still get a proper status.
 *
 * A client that stops reading would make every further event wait in memory:
 * `whenWritable` lets the producer pause instead, and a client that reads
 * nothing for `stallMs` while events wait is cut (the request ends as if it had
 * left), so a paused stream cannot hold its sequence for ever.
 */
export class EventStream {
  private started = false;
  private drained: Promise<void> | undefined;

  constructor(
    private readonly reply: FastifyReply,
    private readonly stallMs: number,
    private readonly onStall: () => void = () => undefined,
  ) {}

  get isStarted(): boolean {
    return this.started;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    eventStreams.add(this.reply.raw);
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

  /** Undefined while the client keeps up; otherwise settles once what waits has been taken (or the client was cut). */
  whenWritable(): Promise<void> | undefined {
    const raw = this.reply.raw;
    if (!raw.writableNeedDrain || raw.destroyed) return undefined;
    this.drained ??= new Promise<void>((resolve) => {
      const settle = (): void => {
        clearTimeout(timer);
        raw.off("drain", settle);
        raw.off("close", settle);
        this.drained = undefined;
        resolve();
      };
      const timer = setTimeout(() => {
        this.onStall();
        raw.destroy();
        settle();
      }, this.stallMs);
      raw.on("drain", settle);
      raw.on("close", settle);
    });
    return this.drained;
  }

  done(): void {
    this.start();
    if (!this.reply.raw.destroyed) this.reply.raw.end("data: [DONE]\n\n");
  }

  /**
   * The server ends the stream before its answer ended (the drain's deadline). A bare close would read like a
   * network failure: the error goes out as the last event, or as the whole response when nothing went out yet.
   */
  cut(error: ApiError): void {
    if (this.reply.raw.destroyed) return;
    if (this.started) this.fail(error);
    else void this.reply.code(error.status).headers(error.headers).send(error.toBody());
  }

  /** After the headers went out the status cannot change: the error travels as an event. */
  fail(error: ApiError): void {
    if (!this.reply.raw.destroyed) this.reply.raw.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
  }
}
