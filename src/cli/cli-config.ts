import { existsSync, readFileSync } from "node:fs";
import { ConfigError } from "../config/config-error.js";
import { loadConfig, type ServeFlags, type ServerConfig } from "../config/config.js";
import { UsageError } from "./exit.js";

/**
 * Loads the configuration as `serve` does. A problem inside the config file
 * also names the file, so the one line says where to look.
 */
export function loadCliConfig(flags: ServeFlags): ServerConfig {
  try {
    return loadConfig(flags);
  } catch (error) {
    throw namingConfigFile(error, flags);
  }
}

/** A ConfigError about a field of the config file, with the file named; any other error as it is. */
export function namingConfigFile(error: unknown, flags: ServeFlags): unknown {
  const file = flags.config ?? process.env.ALVEARE_CONFIG;
  if (error instanceof ConfigError && file && isFileField(error.field, file)) return new UsageError(`${error.message} (in ${file})`);
  return error;
}

const isFileField = (field: string, file: string): boolean => !field.startsWith("--") && !field.startsWith("ALVEARE_") && field !== file;

/** Which flag, variable or file field set a setting, for error messages that say what to change. */
export function settingSource(
  flag: { name: string; value: string | undefined },
  envName: string,
  fileField: string,
  configFile: string | undefined,
): string {
  if (flag.value !== undefined) return flag.name;
  if (process.env[envName]) return envName;
  if (configFile && existsSync(configFile) && fileHasField(configFile, fileField)) return `'${fileField}' in ${configFile}`;
  return "the default";
}

function fileHasField(file: string, field: string): boolean {
  try {
    let node: unknown = JSON.parse(readFileSync(file, "utf8"));
    for (const part of field.split(".")) {
      if (typeof node !== "object" || node === null || !(part in node)) return false;
      node = (node as Record<string, unknown>)[part];
    }
    return true;
  } catch {
    return false;
  }
}
