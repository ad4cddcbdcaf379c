import { connect, createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface TcpProxy {
  port: number;
  /** Drops every open connection and refuses new ones, as a network cut does. */
  cut(): void;
  /** Lets connections through again. */
  restore(): void;
  close(): Promise<void>;
}

/** A TCP pass-through to host:port with a switch, to cut a dependency (PostgreSQL, Redis) off from a process mid-test. */
export async function startTcpProxy(port: number, host = "127.0.0.1"): Promise<TcpProxy> {
  let up = true;
  const open = new Set<Socket>();
  const server = createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const target = connect(port, host);
    open.add(client).add(target);
    const drop = (): void => {
      client.destroy();
      target.destroy();
      open.delete(client);
      open.delete(target);
    };
    for (const s of [client, target]) s.on("error", drop).on("close", drop);
    client.pipe(target);
    target.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => {
      up = false;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore: () => {
      up = true;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
