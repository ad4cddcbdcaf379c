import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { connectRedis, type RedisConnection } from "../../src/gate/redis/connection.js";
import { closedPort } from "./ports.js";

/** The machine's shared Redis: tests only ever touch keys under their own prefix. */
export const SHARED_REDIS_URL = process.env.ALVEARE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A prefix no other test run uses. */
export const testPrefix = (name = "t"): string => `alveare-test:${name}:${randomBytes(6).toString("hex")}:`;

export async function testConnection(prefix = testPrefix(), url = SHARED_REDIS_URL): Promise<RedisConnection> {
  return connectRedis(url, prefix, "alveare-test");
}

/** Deletes every key under the prefix (SCAN, never KEYS: the Redis is shared). */
export async function deletePrefix(prefix: string, url = SHARED_REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** A Redis of the test's own on a free port, which the test may kill and start again (the shared one is never stopped). */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  port = 0;

  /** With a password, the server asks for it (`requirepass`); `url` leaves it out. */
  constructor(private readonly password?: string) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await closedPort();
    const auth = this.password === undefined ? [] : ["--requirepass", this.password];
    // Its own directory: a replica writes the primary's snapshot to disk when it syncs, whatever --save says.
    const dir = mkdtempSync(join(tmpdir(), "alveare-redis-"));
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, ...auth],
      {
        stdio: "ignore",
      },
    );
    this.child = child;
    const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, enableOfflineQueue: false, password: this.password });
    probe.on("error", () => undefined);
    for (let i = 0; i < 200; i++) {
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  /** kill -9: no goodbye to its clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    this.child = undefined;
  }
}
