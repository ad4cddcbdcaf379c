#!/usr/bin/env node
import { Command, CommanderError, type Option } from "commander";
import { VERSION } from "../version.js";
import { registerAccountCommands } from "./admin-commands.js";
import { exitCodeOf, messageOf, UsageError } from "./exit.js";
import { registerMigrateCommand } from "./migrate-command.js";
import { registerBackupCommand } from "./backup-command.js";
import { visible } from "./output.js";
import { registerModelCommands, registerServeCommand } from "./server-commands.js";

const EXAMPLES = `
Examples:
  $ alveare serve --model ./models/qwen2.5-0.5b-instruct-q4_k_m.gguf
  $ alveare accounts create --name "Acme" --plan starter
  $ alveare keys create --account acct_7Hq2mXv9LpR4sTn1
  $ alveare usage --account acct_7Hq2mXv9LpR4sTn1
  $ alveare migrate
  $ alveare backup backups/alveare.db

Exit codes: 0 done, 1 could not be done (e.g. no such account, port in use), 2 wrong usage.
Run 'alveare COMMAND --help' for a command's options.`;

/** The command a command line names, e.g. `alveare keys create`; filled in before parsing, read by error lines. */
interface Named {
  path: string;
  /** That command, whose parsed `args` name a stray argument. */
  command?: Command;
}

/**
 * Commander's own errors, on one line. Those that leave the user to find what is missing ("required
 * option '--plan <plan>' not specified") point at the command's help, as ours do; a suggestion
 * ("Did you mean …?") or a sentence that lists the allowed values already says what to type.
 */
function errorLine(text: string, named: Named): string {
  const stray = strayArgument(text, named);
  if (stray !== undefined) return `alveare: ${stray}; see ${named.path} --help\n`;
  const line = text
    .replace(/^error: /, "")
    .trim()
    .replace(/\s*\n\s*/g, " ");
  const explained = line.includes("(Did you mean") || line.endsWith(".");
  return `alveare: ${line}${explained ? "" : `; see ${named.path} --help`}\n`;
}

/**
 * `accounts create acme --plan starter` (a value without its option) is a natural first try; commander
 * says only "too many arguments for 'create'. Expected 0 arguments but got 1.", naming neither the
 * word nor the help. This names the word, as `serve` does.
 */
function strayArgument(text: string, named: Named): string | undefined {
  const command = named.command;
  if (command === undefined || !text.includes("too many arguments")) return undefined;
  const expected = command.registeredArguments.map((a) => `<${a.name()}>`);
  const extra = command.args[expected.length];
  if (extra === undefined) return undefined;
  const name = named.path.replace(/^alveare /, "");
  const got = `'${visible(extra)}'`;
  return expected.length === 0 ? `${name} takes no arguments, got ${got}` : `${name} takes ${expected.join(" ")} only, got ${got} too`;
}

/**
 * An option's help line, its default written as the others write theirs ("(default 8080, or ALVEARE_PORT)"):
 * commander's own would print `(default: "live")`, quoted as a JSON string.
 */
function describeOption(option: Option): string {
  // Commander's help lists a required option like any other: it says so only once the command has failed without it.
  if (option.mandatory) return `${option.description} (required)`;
  return option.defaultValue === undefined ? option.description : `${option.description} (default ${String(option.defaultValue)})`;
}

/** The whole command tree; settings made before `.command()` are inherited by every subcommand. */
function buildProgram(named: Named): Command {
  const program = new Command("alveare")
    .description("Self-hostable API server for small specialist models: run it, and manage its accounts, keys and usage.")
    .helpOption("-h, --help", "show help")
    .helpCommand("help [command]", "show help for a command")
    .showSuggestionAfterError(true)
    .exitOverride()
    // One line, as every error of ours: commander puts its "(Did you mean …?)" on a line of its own.
    .configureOutput({ outputError: (text, write) => write(errorLine(text, named)) })
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false, optionDescription: describeOption })
    .addHelpText("after", EXAMPLES);
  registerServeCommand(program);
  registerModelCommands(program);
  registerAccountCommands(program);
  registerMigrateCommand(program);
  registerBackupCommand(program);
  // --version answers at every level, as --help does.
  const withVersion = (command: Command): void => {
    command.version(VERSION, "-V, --version", "print the version");
    for (const sub of command.commands) withVersion(sub);
  };
  withVersion(program);
  return program;
}

/**
 * `help keys revoke` as `keys revoke --help` (commander's help command looks one level down only), and
 * `help nope` as `nope`, refused as an unknown command (commander would print the whole help).
 */
function helpFor(program: Command, argv: string[]): string[] {
  if (argv[0] !== "help" || argv.length < 2) return argv;
  const known = program.commands.some((c) => c.name() === argv[1] || c.aliases().includes(argv[1]!));
  return known ? [...argv.slice(1), "--help"] : argv.slice(1);
}

/**
 * Commander checks required options before unknown ones, so `keys create --acount X` would say
 * "--account not specified" and hide the typo. When the command line holds an option the command
 * does not know, its required options are left unchecked: commander then names the unknown option
 * with its "Did you mean --account?", the mistake the user made.
 */
function unknownOptionFirst(program: Command, argv: string[]): void {
  const { command, next } = commandOf(program, argv);
  let i = next;
  const options = [...command.options, command.createHelp().visibleOptions(command)].flat();
  for (; i < argv.length && argv[i] !== "--"; i++) {
    const token = argv[i]!;
    if (!token.startsWith("--")) continue;
    const option = options.find((o) => o.long === token.split("=")[0]);
    if (option === undefined) {
      for (const o of command.options) o.mandatory = false;
      return;
    }
    // The next word is this option's value, even one that starts with "--".
    if (option.required && !token.includes("=")) i++;
  }
}

/**
 * `serve --port --host 0.0.0.0`: commander takes `--host` for the port's value, then names `0.0.0.0` as a stray
 * argument (or, for `--port --model m.gguf`, asks for the model that was given). An option that needs a value and is
 * followed by another of the command's options is named as the mistake instead.
 */
function refuseMissingValue(program: Command, argv: string[], path: string): void {
  const { command, next } = commandOf(program, argv);
  const options = command.createHelp().visibleOptions(command);
  const optionOf = (token: string): Option | undefined => options.find((o) => o.long === token.split("=")[0] || o.short === token);
  for (let i = next; i < argv.length && argv[i] !== "--"; i++) {
    const option = optionOf(argv[i]!);
    if (option === undefined || !option.required || argv[i]!.includes("=")) continue;
    const value = argv[++i];
    if (value !== undefined && value.startsWith("-") && optionOf(value) !== undefined) {
      throw new UsageError(`${option.long ?? argv[i - 1]} needs a value, but is followed by the option ${value}; see ${path} --help`);
    }
  }
}

/** The (sub)command the leading words of argv name, and the index of the first word after them. */
function commandOf(program: Command, argv: string[]): { command: Command; next: number } {
  let command = program;
  let i = 0;
  for (; i < argv.length && !argv[i]!.startsWith("-"); i++) {
    const sub = command.commands.find((c) => c.name() === argv[i] || c.aliases().includes(argv[i]!));
    if (!sub) break;
    command = sub;
  }
  return { command, next: i };
}

/** `alveare keys create`: the words that name the command, as typed to ask for its help. */
function pathOf(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

async function main(argv: string[]): Promise<void> {
  try {
    const named: Named = { path: "alveare" };
    const program = buildProgram(named);
    const args = helpFor(program, argv);
    named.command = commandOf(program, args).command;
    named.path = pathOf(named.command);
    unknownOptionFirst(program, args);
    refuseMissingValue(program, args, named.path);
    await program.parseAsync(args, { from: "user" });
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
