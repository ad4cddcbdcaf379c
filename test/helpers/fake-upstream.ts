import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A small OpenAI-compatible upstream whose only job is to misbehave on cue:
 * the remote engine's fault handling is tested against it. It never stands in
 * for inference — real answers come from a second Alveare process.
 */
/**
 * "hold": answers like "ok", but only once the test calls `release()`.
 * "401-echo": a 401 whose message repeats the Authorization header it got and runs to 2 KB (as some providers' do).
 * "error-event": a stream whose first event is an error object echoing the Authorization header.
 * "400-long": a 400 whose reason runs to 2 KB.
 * "401-late": a 401 that repeats the Authorization header across its 500th character.
 * "404": the 404 a server gives a path it lacks (a base_url without /v1).
 * "garbled": a 200 that is no JSON: SSE to a whole-answer request, and a stream whose event is cut inside its JSON.
 */
export type Fault =
  "slow" | "500" | "503" | "429" | "cut-stream" | "ok" | "hold" | "401-echo" | "error-event" | "400-long" | "401-late" | "garbled" | "404";

export class FakeUpstream {
  fault: Fault = "ok";
  /** How long an "ok" answer takes, so concurrent requests overlap. */
  delayMs = 0;
  requests: Array<Record<string, unknown>> = [];
  /** The same requests' bodies as sent, for what parsing would round (a 64-bit integer). */
  bodies: string[] = [];
  /**
   * What "ok" answers instead of "fine": a whole chat.completion body, and the chunks of a streamed answer
   * (sent as events, then [DONE]). For answers other OpenAI-compatible servers give that Alveare never does.
   */
  scripted: { whole: Record<string, unknown>; events: Array<Record<string, unknown>> } | undefined;
  /**
   * When set, "ok" answers by calling it with the raw response (and whether a stream was asked for): for answers
   * that are not OpenAI's shape at all (wrong content type, SSE comments, events split across writes, bodies cut or huge).
   */
  respond: ((res: ServerResponse, stream: boolean) => void | Promise<void>) | undefined;
  /** The Retry-After a "503" or "429" answer carries, when set. */
  retryAfter: string | undefined;
  private server: Server | undefined;
  private held: Array<() => void> = [];

  /** Answers every request held so far. */
  release(): void {
    for (const answer of this.held.splice(0)) answer();
  }

  /** Listens (again, after stop, when given the same port) and returns its /v1 base URL. */
  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body = "";
    for await (const chunk of req) body += String(chunk);
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "m", object: "model" }] }));
      return;
    }
    const parsed = JSON.parse(body) as Record<string, unknown>;
    this.requests.push(parsed);
    this.bodies.push(body);
    const chunk = (content: string): string =>
      `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    switch (this.fault) {
      case "slow":
        setTimeout(() => res.writableEnded || res.end("{}"), 5_000).unref();
        return;
      case "500":
        res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "boom" } }));
        return;
      case "503":
      case "429":
        res
          .writeHead(this.fault === "429" ? 429 : 503, {
            "content-type": "application/json",
            ...(this.retryAfter ? { "retry-after": this.retryAfter } : {}),
          })
          .end(JSON.stringify({ error: { message: "busy" } }));
        return;
      case "cut-stream":
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(chunk("partial "));
        res.write(chunk("answer"));
        setTimeout(() => res.destroy(), 20);
        return;
      case "401-echo":
        res
          .writeHead(401, { "content-type": "application/json" })
          .end(
            JSON.stringify({ error: { message: `Incorrect API key provided: ${req.headers.authorization} at gpu-7.internal ${"x".repeat(2000)}` } }),
          );
        return;
      case "401-late":
        res
          .writeHead(401, { "content-type": "application/json" })
          .end(JSON.stringify({ error: { message: `${"x".repeat(493)} ${req.headers.authorization} is not a key we know` } }));
        return;
      case "404":
        res.writeHead(404, { "content-type": "text/plain" }).end(`Cannot POST ${req.url ?? ""}`);
        return;
      case "400-long":
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: `prompt too long ${"z".repeat(2000)}` } }));
        return;
      case "garbled":
        if (parsed.stream === true) {
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.end(`${chunk("secret-weights ")}data: {"id":"x","choices":[{"delta":{"content":"gpu-7 secret`);
        } else {
          res.writeHead(200, { "content-type": "text/event-stream" }).end(`${chunk("secret-weights")}data: [DONE]\n\n`);
        }
        return;
      case "error-event":
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(`data: ${JSON.stringify({ error: { message: `worker died holding ${req.headers.authorization}`, padding: "y".repeat(2000) } })}\n\n`);
        return;
      case "hold":
        await new Promise<void>((resolve) => this.held.push(resolve));
        this.answer(res, parsed.stream === true);
        return;
      case "ok":
        await new Promise((resolve) => setTimeout(resolve, this.delayMs));
        this.answer(res, parsed.stream === true);
    }
  }

  private answer(res: ServerResponse, stream: boolean): void {
    if (this.respond !== undefined) return void this.respond(res, stream);
    if (this.scripted !== undefined && stream) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (const event of this.scripted.events) res.write(`data: ${JSON.stringify(event)}\n\n`);
      res.end("data: [DONE]\n\n");
      return;
    }
    if (this.scripted !== undefined) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(this.scripted.whole));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
      }),
    );
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
