import { join } from "node:path";

/** The SQLite file of a data dir: the server, the CLI and the tests all open this one. */
export const sqliteFile = (dataDir: string): string => join(dataDir, "alveare.db");
