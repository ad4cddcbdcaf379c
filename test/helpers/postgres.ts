import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * The machine's PostgreSQL (trust auth). ALVEARE_TEST_POSTGRES_URL overrides it;
 * its database is only where test databases are created from, never used itself.
 */
export const POSTGRES_ADMIN_URL = process.env.ALVEARE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const created = new Set<string>();

function urlOf(database: string): string {
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

async function admin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/** A new, empty database of its own (alveare_t_<random>), so test runs never see each other's data. Returns its URL. */
export async function freshDatabase(options: { icuLocale?: string } = {}): Promise<string> {
  const name = `alveare_t_${randomBytes(6).toString("hex")}`;
  // A database whose default collation is a language's (ICU), not the bytewise one the test cluster has.
  const collation =
    options.icuLocale === undefined ? "" : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${options.icuLocale}' LOCALE 'C.UTF-8'`;
  await admin((c) => c.query(`CREATE DATABASE ${name}${collation}`));
  created.add(name);
  return urlOf(name);
}

/** Drops a database made by freshDatabase, whoever is still connected to it. */
export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!created.delete(name)) return;
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/** Drops every database this process made; call it from an `after` hook. */
export async function dropAllDatabases(): Promise<void> {
  for (const name of [...created]) await dropDatabase(urlOf(name));
}

/** A Redis URL to pair with the database: the shared mode takes both (the PostgreSQL tests never use it). */
export const TEST_REDIS_URL = process.env.ALVEARE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
