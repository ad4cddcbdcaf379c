#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ConfigError } from "../config/config-error.js";
import { loadConfig } from "../config/config.js";
import { ModelUnavailableError, progressBar, resolveModel } from "../models/model-files.js";
import { ApiError } from "../errors.js";
import { serve } from "./serve.js";
import { AccountError } from "../gate/accounts.js";
import { CommandError, runAccountsCommand } from "./accounts.js";

const USAGE = `usage:
  alveare serve [--port N] [--host H] [--data-dir D] [--model PATH_OR_HF_URI] [--config FILE]
  alveare models pull URI [--data-dir D]
  alveare accounts create --name N --plan solo|starter|professional|scale [--json]
  alveare accounts list [--json]
  alveare accounts update ACCOUNT_ID [--plan P] [--status active|suspended] [--json]
  alveare members invite --account ID --email E [--json]
  alveare keys create --account ID [--mode live|test] [--name N] [--json]
  alveare keys list --account ID [--json]
  alveare keys revoke KEY_ID
  alveare usage --account ID [--mode live|test] [--json]
  (accounts, members, keys and usage also take --data-dir D and --config FILE)`;

/** Errors an operator can fix print one line; anything else is a bug and keeps its stack. */
export function reportAndExit(error: unknown): never {
  if (
    error instanceof ConfigError || error instanceof ModelUnavailableError || error instanceof UsageError ||
    error instanceof AccountError || error instanceof CommandError
  ) {
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
