#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ConfigError } from "../config/config-error.js";
import { loadConfig } from "../config/config.js";
import { ModelUnavailableError, progressBar, resolveModel } from "../models/model-files.js";
import { ApiError } from "../errors.js";
import { serve } from "./serve.js";

const USAGE = `usage:
  alveare serve [--port N] [--host H] [--data-dir D] [--model PATH_OR_HF_URI] [--config FILE]
  alveare models pull URI [--data-dir D]`;

/** Errors an operator can fix print one line; anything else is a bug and keeps its stack. */
export function reportAndExit(error: unknown): never {
  if (error instanceof ConfigError || error instanceof ModelUnavailableError || error instanceof UsageError) {
    process.stderr.write(`alveare: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof ApiError) {
    process.stderr.write(`alveare: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`alveare: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
}

export class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve": {
      const { values } = parseArgs({
        args: rest,
        options: { port: { type: "string" }, host: { type: "string" }, "data-dir": { type: "string" }, model: { type: "string" }, config: { type: "string" } },
      });
      await serve({ port: values.port, host: values.host, dataDir: values["data-dir"], model: values.model, config: values.config });
      return;
    }
    case "models": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { "data-dir": { type: "string" } } });
      if (positionals[0] !== "pull" || positionals[1] === undefined) throw new UsageError(`expected: alveare models pull URI\n${USAGE}`);
      const config = loadConfig({ dataDir: values["data-dir"] });
      const path = await resolveModel(positionals[1], config.dataDir, progressBar());
      process.stdout.write(`${path}\n`);
      return;
    }
    default: {
      const { runAccountsCommand } = await import("./accounts.js");
      if (await runAccountsCommand(command, rest)) return;
      throw new UsageError(command === undefined ? USAGE : `unknown command '${command}'\n${USAGE}`);
    }
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof TypeError && (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    reportAndExit(new UsageError(`${error.message}\n${USAGE}`));
  }
  reportAndExit(error);
});
