/** A mistake in configuration; the message names the field so the operator can fix it. */
export class ConfigError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`configuration error at ${field}: ${problem}`);
    this.name = "ConfigError";
  }
}
