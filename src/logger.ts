import pino, { type DestinationStream, type Logger } from "pino";

/** A URL as logs may show it: a query string can carry a key (`?api_key=…`), so it is never written. */
export function withoutQuery(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : `${url.slice(0, q)}?[redacted]`;
}

/**
 * Structured JSON logs. Anything that looks like a credential is redacted by
 * path as a second line of defence; the first is never logging headers at all.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "alveare" },
      // Replaces Fastify's request serializer, which writes the URL verbatim.
      serializers: { req: (req: { method?: string; url?: string; id?: string }) => ({ method: req.method, url: withoutQuery(req.url ?? ""), id: req.id }) },
      redact: { paths: ["authorization", "*.authorization", "headers.authorization", "key", "*.key", "api_key", "*.api_key"], censor: "[redacted]" },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
