import pino, { type DestinationStream, type Logger } from "pino";
import { prettyFactory } from "pino-pretty";
import type { LogFormat } from "./config/config.js";

type LogOutput = "json" | "pretty";

/** "auto" means human-readable for a person at a terminal and JSON for log collectors. */
export function logOutputFor(format: LogFormat, isTerminal: boolean): LogOutput {
  if (format === "auto") return isTerminal ? "pretty" : "json";
  return format;
}

/** A URL as logs may show it: a query string can carry a key (`?api_key=…`), so it is never written. */
export function withoutQuery(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : `${url.slice(0, q)}?[redacted]`;
}

/**
 * Structured logs, JSON or pretty. Anything that looks like a credential is
 * redacted by path as a second line of defence; the first is never logging
 * headers at all.
 */
export function createLogger(level: string, destination?: DestinationStream, output: LogOutput = "json"): Logger {
  const target =
    output === "pretty"
      ? prettyDestination(destination ?? pino.destination({ fd: 1, sync: true }), destination === undefined && process.stdout.isTTY === true)
      : (destination ?? new TurnBufferedDestination(pino.destination({ fd: 1, sync: true })));
  return pino(
    {
      level,
      base: { service: "alveare" },
      // Replaces Fastify's request serializer, which writes the URL verbatim.
      serializers: {
        req: (req: { method?: string; url?: string; id?: string }) => ({ method: req.method, url: withoutQuery(req.url ?? ""), id: req.id }),
      },
      redact: { paths: ["authorization", "*.authorization", "headers.authorization", "key", "*.key", "api_key", "*.api_key"], censor: "[redacted]" },
    },
    target,
  );
}

/**
 * Standard output for JSON lines: the lines logged in one event-loop turn go
 * out together at the end of that turn, in one synchronous write. An
 * asynchronous write costs a hand-off to libuv's thread pool and back (a
 * thread wake-up each way) per write; a synchronous one per line costs a
 * system call per line. No line waits past its turn, and whatever is pending
 * is written when the process exits.
 */
class TurnBufferedDestination implements DestinationStream {
  private pending = "";
  private scheduled = false;

  constructor(private readonly out: DestinationStream) {
    process.once("exit", () => this.writePending());
  }

  write(line: string): void {
    this.pending += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.writePending);
    }
  }

  /** pino's logger.flush(): writes what is pending now. */
  flush(done?: (error?: Error) => void): void {
    this.writePending();
    done?.();
  }

  private readonly writePending = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = "";
    this.out.write(lines);
  };
}

/** Request lines read as `POST /v1/infer 429 rate_limit_exceeded 2.1ms`, the rest as key/values after it. */
function compactRequestLine(record: Record<string, unknown>): Record<string, unknown> {
  if (record.msg !== "request") return record;
  const { method, route, status, code, latency_ms: latency, ...rest } = record;
  const words = [method, route, status, code, latency === undefined ? undefined : `${String(latency)}ms`];
  return {
    ...rest,
    msg: words
      .filter((w) => w !== undefined)
      .map(String)
      .join(" "),
  };
}

function prettyDestination(out: DestinationStream, colorize: boolean): DestinationStream {
  // `pid` stays: only the start-up line carries one (pino's own is not in `base`), and a person at the
  // terminal needs it to signal the server itself rather than `npx` (README: Shutdown). pino-pretty shows it as `INFO (pid):`.
  const render = prettyFactory({ colorize, translateTime: "SYS:HH:MM:ss", ignore: "hostname,service", singleLine: true });
  return {
    write(line: string): void {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      out.write(render(compactRequestLine(record)));
    },
  };
}
