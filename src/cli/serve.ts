import { readdirSync } from "node:fs";
import { stat } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { createServer } from "node:net";
import { constants as osConstants } from "node:os";
import { DEFAULT_REDIS_PREFIX, reachableUrl, type ServeFlags, type ServerConfig } from "../config/config.js";
import { createLogger, logOutputFor } from "../logger.js";
import type { Logger } from "pino";
import { isGgufFile, isRemoteModel } from "../models/model-files.js";
import { startServer } from "../server/server.js";
import { storeLocation } from "../store/create-store.js";
import { safeUrl } from "../gate/redis/connection.js";
import { loadCliConfig, namingConfigFile, settingSource } from "./cli-config.js";
import { RuntimeError, UsageError } from "./exit.js";
import { DEFAULT_DRAIN_SECONDS } from "../observability/settings.js";
import { unknownVariables } from "../config/unknown-variables.js";

/** Signals this close to the first are that one again, relayed (npm, a supervisor); a person's second Ctrl-C comes later. */
const SAME_SIGNAL_MS = 500;

/** What is wrong with a file llama.cpp is to load as GGUF: missing, a directory, unreadable (the error), not GGUF; undefined when nothing. */
async function ggufProblem(path: string): Promise<"missing" | "directory" | "not GGUF" | Error | undefined> {
  const info = await stat(path).catch(() => undefined);
  // A directory (say, the data dir's models/ that `models pull` fills) exists: "not found" would send the user looking for it.
  if (info?.isDirectory() === true) return "directory";
  if (info?.isFile() !== true) return "missing";
  // llama.cpp's own complaint about a file that is not a model names neither the file nor the setting.
  const gguf = await isGgufFile(path).catch((error: Error) => error);
  return gguf === true ? undefined : gguf === false ? "not GGUF" : gguf;
}

/** The .gguf file to name instead of a directory: the one it holds, if it holds exactly one. */
function ggufHint(directory: string): string {
  let files: string[] = [];
  try {
    files = readdirSync(directory).filter((name) => name.endsWith(".gguf"));
  } catch {
    // Unreadable: the general hint still holds.
  }
  return files.length === 1 ? `the .gguf file in it: ${join(directory, files[0]!)}` : "the path of a .gguf file, not of its directory";
}

/**
 * A missing file as the file system was asked for it, and as given when that was a relative path: `npm start` runs
 * in the package's directory, so `./model.gguf` typed in another one is looked for where the user did not put it.
 */
function missingFile(location: string, source: string): string {
  if (isAbsolute(location)) return `${location} (given by ${source})`;
  const elsewhere = npmStartedElsewhere();
  const npm = elsewhere === undefined ? "" : `; npm start runs in ${process.cwd()}, not in ${elsewhere} where it was typed: give an absolute path`;
  return `${resolve(location)} (given by ${source} as ${location}${npm})`;
}

/** Where `npm start` was typed, when that is not the directory it runs the server in. */
function npmStartedElsewhere(): string | undefined {
  const typedIn = process.env.INIT_CWD;
  if (process.env.npm_lifecycle_event !== "start" || typedIn === undefined || typedIn === "" || typedIn === process.cwd()) return undefined;
  return typedIn;
}

/**
 * Every local model file and LoRA adapter a specialist will load must exist;
 * checked before the llama.cpp runtime starts, and the message names the flag,
 * variable or field that gave the path.
 */
async function checkLocalModels(config: ServerConfig, flags: ServeFlags): Promise<void> {
  const configFile = flags.config ?? process.env.ALVEARE_CONFIG;
  for (const { id, engine } of config.specialists) {
    if (engine.kind !== "embedded") continue;
    const named = engine.model in config.models;
    const location = config.models[engine.model] ?? engine.model;
    if (isRemoteModel(location)) continue;
    const problem = await ggufProblem(location);
    if (problem === undefined) continue;
    const source = !named
      ? `'specialists.${id}.model' in ${configFile ?? "the config file"}`
      : engine.model === "base"
        ? settingSource({ name: "--model", value: flags.model }, "ALVEARE_MODEL", "models.base", configFile)
        : `'models.${engine.model}' in ${configFile ?? "the config file"}`;
    if (problem === "missing")
      throw new UsageError(`model file not found: ${missingFile(location, source)}; pass an existing .gguf file or an hf: URI`);
    if (problem === "directory") throw new UsageError(`${location} is a directory (given by ${source}); pass ${ggufHint(location)}`);
    if (problem instanceof Error) throw new UsageError(`cannot read the model file ${location} (given by ${source}): ${problem.message}`);
    throw new UsageError(`${location} is not a GGUF model file (given by ${source}); pass a .gguf file or an hf: URI`);
  }
  for (const { id, engine } of config.specialists) {
    if (engine.kind !== "embedded" || engine.lora === undefined) continue;
    const { path } = engine.lora;
    const problem = await ggufProblem(path);
    if (problem === undefined) continue;
    const source = `'specialists.${id}.lora.path' in ${configFile ?? "the config file"}`;
    if (problem === "missing")
      throw new UsageError(`LoRA adapter not found: ${missingFile(path, source)}; pass an existing .gguf adapter, or remove 'lora'`);
    if (problem === "directory") throw new UsageError(`${path} is a directory (given by ${source}); pass ${ggufHint(path)}`);
    if (problem instanceof Error) throw new UsageError(`cannot read the LoRA adapter ${path} (given by ${source}): ${problem.message}`);
    throw new UsageError(
      `${path} is not a GGUF adapter file (given by ${source}); convert the adapter to GGUF (llama.cpp's convert_lora_to_gguf.py)`,
    );
  }
}

/**
 * Binds the address once before any model loads, so a taken port fails in a
 * second rather than after a minute of loading. Port 0 (any free port) cannot clash.
 */
async function checkPortFree(config: ServerConfig, flags: ServeFlags): Promise<void> {
  if (config.port === 0) return;
  const configFile = flags.config ?? process.env.ALVEARE_CONFIG;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => reject(listenProblem(error, config, flags, configFile)));
    probe.listen({ port: config.port, host: config.host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

function listenProblem(error: NodeJS.ErrnoException, config: ServerConfig, flags: ServeFlags, configFile: string | undefined): Error {
  const port = settingSource({ name: "--port", value: flags.port }, "ALVEARE_PORT", "port", configFile);
  const host = settingSource({ name: "--host", value: flags.host }, "ALVEARE_HOST", "host", configFile);
  switch (error.code) {
    case "EADDRINUSE":
      return new RuntimeError(
        `port ${config.port} on ${config.host} is already in use (port from ${port}); stop the other process or choose another port with --port`,
      );
    case "EACCES":
      return new RuntimeError(
        `not allowed to listen on port ${config.port} (port from ${port}); ports below 1024 need privileges, choose another with --port`,
      );
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return new RuntimeError(`cannot listen on host ${config.host} (host from ${host}): no such address on this machine`);
    default:
      return new RuntimeError(`cannot listen on ${config.host}:${config.port}: ${error.message}`);
  }
}

/**
 * npm runs a script in its package's directory, whatever directory `npm start` was typed in, so a relative data
 * directory is the package's: an `npx alveare keys create` typed where npm was run uses another database, and its
 * key is refused. Said at start-up rather than followed (a supervisor's `npm --prefix DIR start` run from / must
 * keep the data it had).
 */
function warnOfNpmDirectory(logger: Logger, dataDir: string): void {
  const typedIn = npmStartedElsewhere();
  if (typedIn === undefined) return;
  logger.warn(
    { typed_in: typedIn, runs_in: process.cwd(), data_dir: dataDir },
    `npm start runs in ${process.cwd()}, not in ${typedIn} where it was typed: CLI commands (npx alveare …) reach this server's data when run there, or given --data-dir ${dataDir}`,
  );
}

export async function serve(flags: ServeFlags): Promise<void> {
  const config = loadCliConfig(flags);
  await checkLocalModels(config, flags);
  await checkPortFree(config, flags);
  const logger = createLogger(config.logLevel, undefined, logOutputFor(config.logFormat, process.stdout.isTTY === true));
  for (const { name, didYouMean } of unknownVariables(process.env, config)) {
    logger.warn(
      { variable: name, ...(didYouMean === undefined ? {} : { did_you_mean: didYouMean }) },
      `${name} is not a setting alveare reads: it is ignored${didYouMean === undefined ? "" : ` (did you mean ${didYouMean}?)`}`,
    );
  }
  logger.info({ data_dir: config.dataDir, database: storeLocation(config) }, `loading models; data in ${config.dataDir}`);
  warnOfNpmDirectory(logger, config.dataDir);
  // Until the server is up there is nothing to drain: a signal stops start-up at once, through
  // process.exit, so the temporary files already made (system-prompt snapshots) go with it.
  const duringStartup = (signal: NodeJS.Signals): void => {
    const exitCode = 128 + osConstants.signals[signal];
    logger.info({ signal, exit_code: exitCode }, "stopped during start-up");
    logger.flush();
    process.exit(exitCode);
  };
  process.once("SIGINT", duringStartup);
  process.once("SIGTERM", duringStartup);
  // A crash still ends the process, as Node does by default (its state is unknown), but first as a
  // log line: a log collector then sees why the node died, not only Node's stack on stderr. The
  // line is written at exit, with whatever else the turn logged.
  process.on("uncaughtExceptionMonitor", (error, origin) => {
    logger.fatal(
      { err: error, origin, exit_code: 1 },
      `crashed (${origin}): exiting; requests in flight are cut, and their usage is settled as not delivered when the server starts again`,
    );
  });
  const server = await startServer(config, { logger }).catch((error: unknown) => {
    logger.flush();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      throw listenProblem(error as NodeJS.ErrnoException, config, flags, flags.config ?? process.env.ALVEARE_CONFIG);
    }
    // Start-up checks of the file's specialists (a schema, a system prompt too long for its context) name the file too.
    throw namingConfigFile(error, flags);
  });
  // ALVEARE_PUBLIC_URL, else where this server listens: its real port, which --port 0 leaves to the system.
  const base = config.publicUrlGiven === true ? config.publicUrl : reachableUrl(config.host, Number(new URL(server.url).port));
  const dashboard = `${base}/dashboard/`;
  logger.info(
    { url: server.url, public_url: base, pid: process.pid, specialists: server.registry.list().map((s) => `${s.id}@${s.engine.name}`) },
    `alveare is serving at ${server.url}`,
  );
  logger.info({ dashboard_url: dashboard }, `dashboard at ${dashboard}`);
  // In the shared mode, also where the nodes meet: a node on another Redis or prefix would share no limits.
  const redis = config.redisUrl === undefined ? undefined : { url: safeUrl(config.redisUrl), prefix: config.redisPrefix ?? DEFAULT_REDIS_PREFIX };
  logger.info(
    { data_dir: config.dataDir, database: storeLocation(config), ...(redis === undefined ? {} : { redis: redis.url, redis_prefix: redis.prefix }) },
    `database ${storeLocation(config)}${redis === undefined ? "" : `; Redis at ${redis.url}, key prefix '${redis.prefix}'`}`,
  );
  logger.info(
    { metrics_url: server.metricsUrl ?? null },
    server.metricsUrl !== undefined
      ? `metrics at ${server.metricsUrl}`
      : "metrics off (their port is 0): give ALVEARE_METRICS_PORT a port, 9464 by default, to turn them on",
  );
  logger.info(
    { operator_dashboard: config.adminToken !== undefined },
    config.adminToken !== undefined
      ? `operator dashboard on: sign in at ${dashboard} with ALVEARE_ADMIN_TOKEN`
      : "operator dashboard off: set ALVEARE_ADMIN_TOKEN to turn it on",
  );
  let firstSignalAt: number | undefined;
  const stop = (signal: string): void => {
    if (firstSignalAt !== undefined) {
      // One Ctrl-C can arrive twice: the terminal signals its whole foreground group, and `npm start`
      // hands the signal on to the server as well (so does a supervisor that signals every process of a
      // service). Only a later one is a second Ctrl-C, which means now.
      if (performance.now() - firstSignalAt < SAME_SIGNAL_MS) return;
      process.exit(130);
    }
    firstSignalAt = performance.now();
    const drainSeconds = config.observability?.drainSeconds ?? DEFAULT_DRAIN_SECONDS;
    logger.info({ signal, drain_seconds: drainSeconds }, `shutting down: refusing new requests, finishing running ones for up to ${drainSeconds} s`);
    const started = performance.now();
    server.close(drainSeconds * 1000).then(
      () => {
        // The last line: a supervisor's log then shows the stop was clean, and how long the drain took.
        logger.info({ exit_code: 0, drained_ms: Math.round(performance.now() - started) }, "stopped");
        logger.flush();
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.off("SIGINT", duringStartup);
  process.off("SIGTERM", duringStartup);
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}
