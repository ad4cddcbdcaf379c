import { CommanderError } from "commander";
import { ConfigError } from "../config/config-error.js";
import { ApiError } from "../errors.js";
import { ModelUnavailableError } from "../models/model-files.js";
import { PlanTableMismatchError, RedisPrefixMismatchError } from "../store/postgres/pg-nodes.js";
import { visible } from "./output.js";

const EXIT_OK = 0;
/** The command was right but could not be done: no such account, port in use, a database that cannot be reached… */
const EXIT_RUNTIME = 1;
/** The command itself was wrong: unknown command or option, a missing or invalid value, a bad config, a model that cannot be had (README: exit codes). */
const EXIT_USAGE = 2;

/** A wrongly given command; the message names the flag or value. */
export class UsageError extends Error {}

/** A well-formed command that could not be carried out. */
export class RuntimeError extends Error {}

/** The account, key or member named is not in the database the command opened. */
export class NotFoundError extends RuntimeError {}

export function exitCodeOf(error: unknown): number {
  if (error instanceof CommanderError) {
    // Help or version that was asked for exits 0; every parse error (and help shown for one) is a usage error.
    return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
  // A plan table or Redis prefix that differs from the running nodes' is a wrong config file or variable.
  const wrongSetting = error instanceof PlanTableMismatchError || error instanceof RedisPrefixMismatchError;
  if (error instanceof UsageError || error instanceof ConfigError || error instanceof ModelUnavailableError || wrongSetting) return EXIT_USAGE;
  // An invalid value (400) is a wrong command; no such account, a suspended one or a full key cap cannot be done (1).
  if (error instanceof ApiError) return error.status === 400 ? EXIT_USAGE : EXIT_RUNTIME;
  return EXIT_RUNTIME;
}

/** One line for the operator, never a stack trace: the message says what to change; control characters it echoes are escaped. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return visible(error.message.split("\n")[0] ?? error.message);
  return visible(String(error));
}
