import type Database from "better-sqlite3";
import { countsAgainstQuota } from "../../metering/counting-rule.js";
import { AUDIT_LOG_MIGRATION } from "./audit-log.js";
import { KEY_CREATORS_BACKFILL } from "../key-creators.js";

/** SQL, or code for a step that needs a rule only code knows (the counting rule). */
export type Migration = string | ((db: Database.Database) => void);

/**
 * Schema versions, applied in order on start; each runs once, in a transaction,
 * and PRAGMA user_version records how far a database has come. Never edit a
 * released migration: add the next one.
 */
export const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at TEXT NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT,
    mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
  );
  CREATE INDEX api_keys_by_account ON api_keys(account_id);
  CREATE TABLE usage_counters (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    mode TEXT NOT NULL,
    period TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mode, period)
  );
  CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    period TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    specialist TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    latency_ms REAL,
    created_at TEXT NOT NULL,
    finished_at TEXT
  );
  CREATE INDEX usage_events_by_period ON usage_events(account_id, mode, period, specialist);
  `,
  // 2: the dashboard's people: members of accounts, their invitations and sessions.
  `
  CREATE TABLE members (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at TEXT NOT NULL
  );
  CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members(id),
    expires_at TEXT NOT NULL,
    used_at TEXT
  );
  CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    member_id TEXT REFERENCES members(id),
    admin INTEGER NOT NULL DEFAULT 0,
    csrf_token TEXT NOT NULL,
    expires_at TEXT NOT NULL
  );
  `,
  // 3: usage pre-aggregated per day and specialist (reports never scan the ledger), and the node
  // that wrote each ledger row (unfinished rows of a dead node are settled).
  (db) => {
    db.exec(`
      CREATE TABLE usage_daily (
        account_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        period TEXT NOT NULL,
        day TEXT NOT NULL,
        specialist TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, mode, period, day, specialist)
      ) WITHOUT ROWID;
      CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        process_start TEXT,
        started_at TEXT NOT NULL
      );
      ALTER TABLE usage_events ADD COLUMN node_id TEXT;
      CREATE INDEX usage_events_unfinished ON usage_events(node_id) WHERE status IS NULL;
    `);
    const groups = db.prepare<
      [],
      { account_id: string; mode: string; period: string; day: string; specialist: string; status: number | null; n: number; tokens: number }
    >(
      `SELECT account_id, mode, period, substr(created_at, 1, 10) AS day, specialist, status,
              COUNT(*) AS n, SUM(prompt_tokens + completion_tokens) AS tokens
       FROM usage_events GROUP BY account_id, mode, period, day, specialist, status`,
    );
    const add = db.prepare(
      `INSERT INTO usage_daily (account_id, mode, period, day, specialist, requests, tokens)
       VALUES (@account_id, @mode, @period, @day, @specialist, @n, @tokens)
       ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens`,
    );
    // Unfinished rows count, as they do in the quota counter, until they complete or are settled.
    for (const group of groups.all()) if (group.status === null || countsAgainstQuota(group.status)) add.run(group);
  },
  // 4: requests refused after authentication (over a limit, outside the plan) never reach the ledger;
  // the dashboard's breakdowns count them from these aggregates, one row per account, mode, UTC day, key and code.
  `
  CREATE TABLE usage_refusals (
    account_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    code TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mode, day, key_id, code)
  ) WITHOUT ROWID;
  `,
  // 5: the audit log (its schema lives beside its queries in audit-log.ts).
  AUDIT_LOG_MIGRATION,
  // 6: which admin token an operator session was started with (a fingerprint, never the token), so
  // rotating ALVEARE_ADMIN_TOKEN ends every operator session made with the old one.
  `ALTER TABLE sessions ADD COLUMN admin_token_digest TEXT;`,
  // 7: who created a key in the dashboard, so removing that member revokes it (see key-creators.ts).
  `ALTER TABLE api_keys ADD COLUMN created_by TEXT;
  ${KEY_CREATORS_BACKFILL}
  CREATE INDEX api_keys_by_creator ON api_keys(created_by) WHERE created_by IS NOT NULL;`,
];
