import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Command } from "commander";
import { makeDirectorySync } from "../make-directory.js";
import { storeLocation } from "../store/create-store.js";
import { BackupError, backUpSqlite } from "../store/sqlite/sqlite-backup.js";
import { OTHER_DATA_DIR_HINT } from "./admin-commands.js";
import { loadCliConfig } from "./cli-config.js";
import { RuntimeError, UsageError } from "./exit.js";
import { note, print, printJson } from "./output.js";

interface BackupOptions {
  json?: boolean;
  dataDir?: string;
  config?: string;
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
    .action((file: string, o: BackupOptions) => {
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
      try {
        // As `mkdir -p` would (the help's `backups/…` works on a first run), readable by its owner only, as the copy.
        makeDirectorySync(dirname(target), 0o700);
      } catch (error) {
        throw new RuntimeError(error instanceof Error ? error.message : String(error));
      }
      let copied: ReturnType<typeof backUpSqlite>;
      try {
        copied = backUpSqlite(source, target);
      } catch (error) {
        throw error instanceof BackupError ? new RuntimeError(error.message) : error;
      }
      const { bytes, schemaVersion } = copied;
      if (o.json) printJson({ database: source, backup: target, bytes, schema_version: schemaVersion });
      else print(`backed up to ${target} (${bytes} bytes, schema version ${schemaVersion})`);
    });
}
