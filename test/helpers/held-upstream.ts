import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An OpenAI-compatible upstream that streams one piece at once and the rest
 * only when the test releases it, so a request stays in flight as long as a
 * test needs (random-weight models stop too soon to hold one open).
 */
export class HeldUpstream {
  /** Headers of each chat completion request, in arrival order. */
  readonly headers: IncomingHttpHeaders[] = [];
  private server: Server | undefined;
  private held = true;
  private waiting: Array<() => void> = [];
  private arrivals: Array<() => void> = [];

  constructor(hold = true) {
    this.held = hold;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      void (async () => {
        let body = "";
        for await (const chunk of req) body += String(chunk);
        if (req.method === "GET") {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "m", object: "model" }] }));
          return;
        }
        this.headers.push(req.headers);
        const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
        for (const arrived of this.arrivals.splice(0)) arrived();
        if (!stream) {
          if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
          res.writeHead(200, { "content-type": "application/json" }).end(
            JSON.stringify({
              choices: [{ index: 0, message: { role: "assistant", content: "held answer" }, finish_reason: "stop" }],
              usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
            }),
          );
          return;
        }
        const piece = (content: string, finish: string | null): string =>
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(piece("held ", null));
        if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
        res.write(piece("answer", "stop"));
        res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n`);
        res.end("data: [DONE]\n\n");
      })();
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  /** Resolves once the next chat completion request has arrived (or at once when one is being held). */
  arrived(): Promise<void> {
    if (this.waiting.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.arrivals.push(resolve));
  }

  /** Lets every held response finish, and later ones through at once. */
  release(): void {
    this.held = false;
    for (const go of this.waiting.splice(0)) go();
  }

  async stop(): Promise<void> {
    this.release();
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/**
 * Reads a stream of a HeldUpstream's specialist until its held first piece has arrived, runs `cut` (a shutdown whose
 * deadline cuts the stream), and returns everything the stream said by its end.
 */
export async function readStreamCutBy(response: Response, cut: () => Promise<void>): Promise<string> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("held ")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended early: ${text}`);
    text += value;
  }
  await cut();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += value;
  }
}

/** A port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
