import { closeSync, existsSync, openSync, rmSync, statSync } from "node:fs";
import { resolve } from "node:path";
import Database from "better-sqlite3";
import type { Command } from "commander";
import { storeLocation } from "../store/create-store.js";
import { OTHER_DATA_DIR_HINT } from "./admin-commands.js";
import { loadCliConfig } from "./cli-config.js";
import { RuntimeError, UsageError } from "./exit.js";
import { note, print, printJson } from "./output.js";

interface BackupOptions {
  json?: boolean;
  dataDir?: string;
  config?: string;
}

/**
 * Copies the SQLite database, while a server may be writing to it, into a new file: one consistent snapshot
 * (VACUUM INTO runs in a single read transaction, which WAL lets the server's writes go on beside), checked, and
 * readable by its owner only, as the database itself (it holds password and key hashes).
 */
async function backUp(source: string, target: string): Promise<{ bytes: number; schemaVersion: number }> {
  const db = new Database(source, { readonly: true, fileMustExist: true });
  let created = false;
  try {
    // Made empty first, with its mode, and never over an existing file: a backup must not replace another one.
    closeSync(openSync(target, "wx", 0o600));
    created = true;
    db.prepare("VACUUM INTO ?").run(target);
  } catch (error) {
    if (created) rmSync(target, { force: true });
    if ((error as { code?: unknown }).code === "EEXIST") throw new RuntimeError(`${target} already exists: name a new file for the backup`);
    if ((error as { code?: unknown }).code === "ENOENT") throw new RuntimeError(`no directory for ${target}: create it first`);
    if ((error as { code?: unknown }).code === "SQLITE_NOTADB") throw new RuntimeError(`${source} is not a SQLite database`);
    throw error;
  } finally {
    db.close();
  }
  const copy = new Database(target, { readonly: true });
  try {
    const check = copy.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new RuntimeError(`the backup ${target} failed its check (${String(check)}); it is kept for inspection`);
    return { bytes: statSync(target).size, schemaVersion: copy.pragma("user_version", { simple: true }) as number };
  } finally {
    copy.close();
  }
}

/** `alveare backup FILE`: a consistent copy of a SQLite deployment's database, taken while its server runs. */
export function registerBackupCommand(program: Command): void {
  program
    .command("backup")
    .description("copy the SQLite database into a new file, consistently, while the server runs")
    .argument("<file>", "the backup file to create (it must not exist)")
    .option("--json", "print one JSON document instead of a sentence")
    .option("--data-dir <dir>", "the server's data directory (default ./data, or ALVEARE_DATA_DIR)")
    .option("--config <file>", "the server's config file (or ALVEARE_CONFIG)")
    .addHelpText(
      "after",
      "\nExample:\n  $ alveare backup backups/alveare-$(date +%F).db\n\nTo restore: stop the server, move alveare.db (and any alveare.db-wal and -shm beside it) out of the data\ndirectory, copy the backup in as alveare.db, start the server.",
    )
    .action(async (file: string, o: BackupOptions) => {
      const config = loadCliConfig({ dataDir: o.dataDir, config: o.config });
      if (config.databaseUrl !== undefined) {
        throw new UsageError(
          `the shared mode keeps its data in ${storeLocation(config)}: back it up with PostgreSQL's tools (pg_dump); Redis holds nothing a backup needs`,
        );
      }
      const source = storeLocation(config);
      if (!existsSync(source)) throw new RuntimeError(`no database at ${source}: ${OTHER_DATA_DIR_HINT}`);
      const target = resolve(file);
      if (!o.json) note(`backing up ${source}`);
      const { bytes, schemaVersion } = await backUp(source, target);
      if (o.json) printJson({ database: source, backup: target, bytes, schema_version: schemaVersion });
      else print(`backed up to ${target} (${bytes} bytes, schema version ${schemaVersion})`);
    });
}
