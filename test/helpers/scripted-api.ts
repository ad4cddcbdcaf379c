import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One request as the scripted server saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.now() when its body had arrived. */
  at: number;
}

export type Script = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

/**
 * A stand-in for the Alveare API on a real loopback socket that answers each request as the test
 * scripts it: the SDK tests use it for answers the real server never gives on cue (a body that
 * stalls, a stream cut before [DONE], an error event with a given code). Real answers come from
 * a real server in the other tests.
 */
export class ScriptedApi {
  script: Script = (_req, res) => void res.writeHead(404).end();
  readonly requests: SeenRequest[] = [];
  private server: Server | undefined;

  /** Listens on a free loopback port; returns its origin (http://127.0.0.1:PORT). */
  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        const seen: SeenRequest = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body, at: performance.now() };
        this.requests.push(seen);
        this.script(req, res, seen);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/** A JSON error body in the server's shape. */
export const errorBody = (code: string, type = "server_error", message = `scripted ${code}`): string =>
  JSON.stringify({ error: { message, type, code, param: null } });

/** One chat.completion.chunk event carrying `content` for choice `index`, with its finish_reason. */
export const chunkEvent = (content: string, finishReason: string | null = null, index = 0): string =>
  `data: ${JSON.stringify({ id: "chatcmpl-x", object: "chat.completion.chunk", created: 1, model: "alveare-chat", choices: [{ index, delta: { content }, finish_reason: finishReason }] })}\n\n`;
