import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A loopback TCP forwarder the test can cut: while cut, every open connection
 * is dropped and every new one is closed at once, as when the network to a
 * database goes away; while its answers are held, what clients send goes
 * through but nothing comes back, as a silent partition looks to a client;
 * `restore` lets connections through again.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly open = new Set<Socket>();
  /** Each connection's upstream side and its client. */
  private readonly answers = new Map<Socket, Socket>();
  private cutOff = false;
  private holding = false;
  /** Text (lower case) after which a new connection's answers are held: see holdAnswersAfter. */
  private holdAfter: string | undefined;
  /** Connections whose answers holdAnswersAfter has held. */
  heldAfterText = 0;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private targetPort: number,
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => {
      if (this.cutOff) return void client.destroy();
      const upstream = connect(this.targetPort, this.targetHost);
      for (const socket of [client, upstream]) {
        this.open.add(socket);
        socket.on("close", () => this.open.delete(socket));
        socket.on("error", () => undefined);
      }
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => {
        client.destroy();
        this.answers.delete(upstream);
      });
      this.answers.set(upstream, client);
      const holdAfter = this.holdAfter;
      if (holdAfter !== undefined) {
        let sent = "";
        const watch = (chunk: Buffer): void => {
          sent = (sent + chunk.toString("latin1").toLowerCase()).slice(-4096);
          if (!sent.includes(holdAfter)) return;
          client.removeListener("data", watch);
          upstream.unpipe(client);
          upstream.pause();
          this.heldAfterText++;
        };
        client.on("data", watch);
      }
      client.pipe(upstream);
      if (this.holding) upstream.pause();
      else upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  cut(): void {
    this.cutOff = true;
    for (const socket of this.open) socket.destroy();
  }

  /** Statements reach the database; no answer comes back until `restore`. */
  holdAnswers(): void {
    this.holding = true;
    for (const [upstream, client] of this.answers) {
      upstream.unpipe(client);
      upstream.pause();
    }
  }

  /**
   * On connections opened from now on, answers stop once the client has sent
   * `text` (compared in lower case): what came before it is answered, that
   * request and what follows it are not, as when the peer stalls mid-conversation.
   */
  holdAnswersAfter(text: string): void {
    this.holdAfter = text.toLowerCase();
  }

  /** New connections go to `port` from now on (a failover behind one address); open ones stay where they are. */
  retarget(port: number): void {
    this.targetPort = port;
  }

  restore(): void {
    this.cutOff = false;
    if (this.holding) {
      this.holding = false;
      for (const [upstream, client] of this.answers) upstream.pipe(client);
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** A started proxy to `host:port`. */
export async function startTcpProxy(port: number, host = "127.0.0.1"): Promise<TcpProxy> {
  const proxy = new TcpProxy(host, port);
  await proxy.start();
  return proxy;
}
