import pino, { type DestinationStream, type Logger } from "pino";

/**
 * Structured JSON logs. Anything that looks like a credential is redacted by
 * path as a second line of defence; the first is never logging headers at all.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "alveare" },
      redact: { paths: ["authorization", "*.authorization", "headers.authorization", "key", "*.key", "api_key", "*.api_key"], censor: "[redacted]" },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
