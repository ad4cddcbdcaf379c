import { existsSync } from "node:fs";
import type { Command } from "commander";
import { copySqliteToPostgres, migrateStore, sqliteSource } from "../store/migrate-store.js";
import { storeLocation } from "../store/create-store.js";
import { OTHER_DATA_DIR_HINT } from "./admin-commands.js";
import { loadCliConfig } from "./cli-config.js";
import { RuntimeError, UsageError } from "./exit.js";
import { note, print, printJson, visible } from "./output.js";

/** Values with a NUL named one by one in the summary; --json lists every one. */
const MAX_REPLACEMENTS_SHOWN = 20;

interface MigrateOptions {
  from?: string;
  json?: boolean;
  dataDir?: string;
  config?: string;
}

/**
 * `alveare migrate`: applies the schema migrations servers apply at start (on
 * SQLite or PostgreSQL), or, with --from sqlite:PATH, moves a SQLite
 * deployment into the empty PostgreSQL database of ALVEARE_DATABASE_URL.
 */
export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("bring the database to this release's schema, or copy a SQLite deployment into PostgreSQL (--from)")
    .option("--from <sqlite:PATH>", "copy everything from this SQLite database (its file or data dir) into ALVEARE_DATABASE_URL")
    .option("--json", "print one JSON document instead of sentences")
    .option("--data-dir <dir>", "the server's data directory (default ./data, or ALVEARE_DATA_DIR)")
    .option("--config <file>", "the server's config file (or ALVEARE_CONFIG)")
    .addHelpText(
      "after",
      "\nExamples:\n  $ alveare migrate\n  $ ALVEARE_DATABASE_URL=postgres://… ALVEARE_REDIS_URL=redis://… alveare migrate --from sqlite:./data",
    )
    .action(async (o: MigrateOptions) => {
      const config = loadCliConfig({ dataDir: o.dataDir, config: o.config });
      const json = o.json === true;
      if (o.from === undefined) {
        // A mistyped data dir would otherwise get a new, empty database, migrated and called up to date.
        if (config.databaseUrl === undefined && !existsSync(storeLocation(config))) {
          throw new RuntimeError(
            `no database at ${storeLocation(config)}: ${OTHER_DATA_DIR_HINT} (nothing to migrate: alveare serve or alveare accounts create starts a new one at this release's schema)`,
          );
        }
        const report = await migrateStore(config);
        if (json) printJson({ database: storeLocation(config), ...report });
        else
          print(
            report.applied.length === 0
              ? `${storeLocation(config)} is up to date (schema version ${report.version})`
              : `${storeLocation(config)}: applied ${report.applied.join(", ")}; now at schema version ${report.version}`,
          );
        return;
      }
      if (!o.from.startsWith("sqlite:") || o.from === "sqlite:")
        throw new UsageError(`--from must be sqlite:PATH (a SQLite file or data dir), got '${o.from}'`);
      if (config.databaseUrl === undefined) {
        throw new UsageError("--from copies into PostgreSQL: set ALVEARE_DATABASE_URL (with ALVEARE_REDIS_URL) to the database to fill");
      }
      const source = sqliteSource(o.from.slice("sqlite:".length));
      if (!existsSync(source)) throw new RuntimeError(`no SQLite database at ${source}`);
      if (!json) note(`copying ${source} into ${storeLocation(config)}`);
      const { copied, replaced } = await copySqliteToPostgres(source, config.databaseUrl).catch((error: unknown) => {
        if ((error as { code?: unknown }).code === "SQLITE_NOTADB") throw new RuntimeError(`${source} is not a SQLite database`);
        throw error;
      });
      if (json) {
        printJson({ from: source, to: storeLocation(config), copied, replaced });
        return;
      }
      print(
        `copied ${Object.entries(copied)
          .map(([table, n]) => `${n} ${table}`)
          .join(", ")}`,
      );
      if (replaced.length > 0) {
        const shown = replaced.slice(0, MAX_REPLACEMENTS_SHOWN).map((r) => visible(`${r.table}.${r.column} of ${r.row}`));
        const more = replaced.length - shown.length;
        print(
          `replaced the NUL characters PostgreSQL text cannot hold with U+FFFD in ${replaced.length} value${replaced.length === 1 ? "" : "s"}: ${shown.join(", ")}${more > 0 ? ` and ${more} more (--json lists them all)` : ""}`,
        );
      }
    });
}
