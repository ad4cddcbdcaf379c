#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { registerAccountCommands } from "./admin-commands.js";
import { exitCodeOf, messageOf } from "./exit.js";
import { registerMigrateCommand } from "./migrate-command.js";
import { registerModelCommands, registerServeCommand } from "./server-commands.js";

const EXAMPLES = `
Examples:
  $ alveare serve --model ./models/qwen2.5-0.5b-instruct-q4_k_m.gguf
  $ alveare accounts create --name "Acme" --plan starter
  $ alveare keys create --account acct_7Hq2mXv9LpR4sTn1
  $ alveare usage --account acct_7Hq2mXv9LpR4sTn1
  $ alveare migrate

Exit codes: 0 done, 1 could not be done (e.g. no such account, port in use), 2 wrong usage.
Run 'alveare COMMAND --help' for a command's options.`;

/** The whole command tree; settings made before `.command()` are inherited by every subcommand. */
function buildProgram(): Command {
  const program = new Command("alveare")
    .description("Self-hostable API server for small specialist models: run it, and manage its accounts, keys and usage.")
    .helpOption("-h, --help", "show help")
    .helpCommand("help [command]", "show help for a command")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`alveare: ${text.replace(/^error: /, "")}`) })
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false })
    .addHelpText("after", EXAMPLES);
  registerServeCommand(program);
  registerModelCommands(program);
  registerAccountCommands(program);
  registerMigrateCommand(program);
  // --version answers at every level, as --help does.
  const withVersion = (command: Command): void => {
    command.version(VERSION, "-V, --version", "print the version");
    for (const sub of command.commands) withVersion(sub);
  };
  withVersion(program);
  return program;
}

/** `help keys revoke` as `keys revoke --help`: commander's help command looks one level down only. */
const helpFor = (argv: string[]): string[] => (argv[0] === "help" && argv.length > 2 ? [...argv.slice(1), "--help"] : argv);

async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(helpFor(argv), { from: "user" });
  } catch (error) {
    // Commander has already printed its own message (and help, where asked for).
    if (!(error instanceof CommanderError)) process.stderr.write(`alveare: ${messageOf(error)}\n`);
    // A stack helps only whoever debugs alveare itself; operators get the one line.
    if (process.env.ALVEARE_LOG_LEVEL?.toLowerCase() === "debug" && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    // exit() rather than exitCode: a failed start may leave native handles (llama.cpp) that would keep the process up.
    process.exit(exitCodeOf(error));
  }
}

void main(process.argv.slice(2));
