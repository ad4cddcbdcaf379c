import type { Command } from "commander";
import { DEFAULT_MODEL_URI } from "../config/config.js";
import { CONFIG_FILE_FIELDS } from "../config/schemas.js";
import { progressBar, resolveModel } from "../models/model-files.js";
import { loadCliConfig } from "./cli-config.js";
import { UsageError } from "./exit.js";
import { print } from "./output.js";

/**
 * `alveare serve model.gguf` is the natural first try; commander would only say "too many arguments",
 * so a stray argument is named, and one that looks like a model is shown as the --model it should be.
 */
function refuseArguments(args: readonly string[]): void {
  const first = args[0];
  if (first === undefined) return;
  const model = /\.gguf$/i.test(first) || /^(hf:|https?:\/\/)/i.test(first);
  // `npm start --port 9000` hands the script `9000` alone: npm keeps options given before `--` for itself.
  const npm = process.env.npm_lifecycle_event === "start" ? "; npm passes options on only after --: npm start -- --port 9000" : "";
  throw new UsageError(
    model
      ? `serve takes the model as an option: alveare serve --model ${first}${npm === "" ? "" : " (npm start -- --model …)"}`
      : `serve takes no arguments, got '${first}'${npm === "" ? "; see alveare serve --help" : npm}`,
  );
}

/** Help text broken at spaces to fit a terminal, as commander does for the options. */
function wrap(text: string, width = 80): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line].join("\n");
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("run the API server, its dashboard and (with ALVEARE_ADMIN_TOKEN) the operator pages")
    .option("--port <n>", "port to listen on (default 8080, or ALVEARE_PORT)")
    .option("--host <h>", "address to listen on (default 127.0.0.1, or ALVEARE_HOST)")
    .option("--data-dir <dir>", "where the database and downloaded models live (default ./data, or ALVEARE_DATA_DIR)")
    .option(
      "--model <path-or-uri>",
      `the base model: a .gguf file or hf:owner/repo/file.gguf (or ALVEARE_MODEL; default ${DEFAULT_MODEL_URI}, ~400 MB, downloaded into the data dir on first start)`,
    )
    .option("--config <file>", "a JSON config file (or ALVEARE_CONFIG)")
    .addHelpText(
      "after",
      `
Examples:
  $ alveare serve
  $ alveare serve --model ./models/qwen2.5-0.5b-instruct-q4_k_m.gguf --port 9000
  $ ALVEARE_ADMIN_TOKEN=... alveare serve --host 0.0.0.0

Logs are readable in a terminal and JSON otherwise; ALVEARE_LOG_FORMAT=json|pretty chooses.

${wrap(`The config file (JSON) takes: ${CONFIG_FILE_FIELDS.join(", ")}. The package's examples/alveare.config.json shows every field, specialists' and plans' included; a mistake stops the server, naming the field. Flags win over environment variables, which win over the file.`)}`,
    )
    .allowExcessArguments(true)
    .action(async (o: { port?: string; host?: string; dataDir?: string; model?: string; config?: string }, command: Command) => {
      refuseArguments(command.args);
      // Loaded on use: the server pulls in llama.cpp, which --help and the account commands do not need.
      const { serve } = await import("./serve.js");
      await serve({ port: o.port, host: o.host, dataDir: o.dataDir, model: o.model, config: o.config });
    });
}

export function registerModelCommands(program: Command): void {
  const models = program
    .command("models")
    .description("download models ahead of time")
    .addHelpText("after", "\nExample:\n  $ alveare models pull hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf");
  models
    .command("pull")
    .description("download a model into the data directory and print its path")
    .argument("<uri>", "hf:owner/repo/file.gguf or an http(s) URL of a .gguf file")
    .option("--data-dir <dir>", "where models are kept (default ./data, or ALVEARE_DATA_DIR)")
    .addHelpText("after", "\nExample:\n  $ alveare models pull hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf")
    .action(async (uri: string, o: { dataDir?: string }) => {
      const config = loadCliConfig({ dataDir: o.dataDir });
      print(await resolveModel(uri, config.dataDir, progressBar()));
    });
}
