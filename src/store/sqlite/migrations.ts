/**
 * Schema versions, applied in order on start; each runs once, in a transaction,
 * and PRAGMA user_version records how far a database has come. Never edit a
 * released migration: add the next one.
 */
export const MIGRATIONS: readonly string[] = [
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
];
