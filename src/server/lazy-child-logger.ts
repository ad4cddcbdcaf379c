import type { Bindings, ChildLoggerOptions, Level, Logger } from "pino";

type LogMethod = (...args: unknown[]) => void;

/**
 * Fastify's per-request logger (`request.log`), made on first use. Fastify
 * makes a pino child with the request id for every request, and pino runs the
 * redaction paths over its bindings (~1 KB and a few µs a request), while a
 * request that goes well never logs through it: its one line is written by
 * the request-line logger. The child is made, with the same bindings and
 * options, only when something logs.
 */
export class LazyChildLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly childBindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.childBindings, this.options));
  }

  get level(): string {
    return this.made?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (
      this.made?.isLevelEnabled(level) ?? (this.options.level === undefined ? this.parent.isLevelEnabled(level) : this.logger.isLevelEnabled(level))
    );
  }

  bindings(): Bindings {
    return this.logger.bindings();
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }

  fatal(...args: unknown[]): void {
    this.log("fatal", args);
  }
  error(...args: unknown[]): void {
    this.log("error", args);
  }
  warn(...args: unknown[]): void {
    this.log("warn", args);
  }
  info(...args: unknown[]): void {
    this.log("info", args);
  }
  debug(...args: unknown[]): void {
    this.log("debug", args);
  }
  trace(...args: unknown[]): void {
    this.log("trace", args);
  }
  silent(): void {}

  private log(level: Level, args: unknown[]): void {
    // A level that is off writes nothing: no child for it.
    if (this.made === undefined && this.options.level === undefined && !this.parent.isLevelEnabled(level)) return;
    (this.logger[level] as LogMethod).apply(this.logger, args);
  }
}
