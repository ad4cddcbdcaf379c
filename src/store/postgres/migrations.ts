import type pg from "pg";
import { KEY_CREATORS_BACKFILL } from "../key-creators.js";
import { inTransaction } from "./pg-pool.js";

/**
 * Schema versions of the PostgreSQL backend, applied in order; version N is
 * entry N-1, and schema_migrations records each one applied. Never edit a
 * released migration: add the next one. Within a release every migration is
 * additive (new tables, new nullable or defaulted columns, new indexes), so a
 * node of the previous release keeps serving on the migrated schema; a
 * breaking change is split over two releases (expand, then contract).
 *
 * Text is compared bytewise (COLLATE "C"), as SQLite does, whatever the
 * database's locale. Times are ISO-8601 text, as in the SQLite file, so both backends compare
 * and return them alike and a SQLite database copies over column for column.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: accounts, keys, the usage ledger and its aggregates, the dashboard's people, refusals.
  `
  CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    plan TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at TEXT COLLATE "C" NOT NULL
  );
  CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    name TEXT COLLATE "C",
    mode TEXT COLLATE "C" NOT NULL CHECK (mode IN ('live', 'test')),
    hash TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C",
    revoked_at TEXT COLLATE "C"
  );
  CREATE INDEX api_keys_by_account ON api_keys(account_id);
  CREATE TABLE usage_counters (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    mode TEXT COLLATE "C" NOT NULL,
    period TEXT COLLATE "C" NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mode, period)
  );
  CREATE TABLE usage_events (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C" NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL,
    period TEXT COLLATE "C" NOT NULL,
    endpoint TEXT COLLATE "C" NOT NULL,
    specialist TEXT COLLATE "C" NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    latency_ms DOUBLE PRECISION,
    created_at TEXT COLLATE "C" NOT NULL,
    finished_at TEXT COLLATE "C",
    node_id TEXT COLLATE "C"
  );
  CREATE INDEX usage_events_by_period ON usage_events(account_id, mode, period, specialist);
  CREATE INDEX usage_events_unfinished ON usage_events(node_id) WHERE status IS NULL;
  CREATE TABLE usage_daily (
    account_id TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL,
    period TEXT COLLATE "C" NOT NULL,
    day TEXT COLLATE "C" NOT NULL,
    specialist TEXT COLLATE "C" NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mode, period, day, specialist)
  );
  CREATE TABLE usage_refusals (
    account_id TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL,
    day TEXT COLLATE "C" NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL,
    code TEXT COLLATE "C" NOT NULL,
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mode, day, key_id, code)
  );
  CREATE TABLE members (
    id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    email TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL
  );
  CREATE TABLE invitations (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    member_id TEXT COLLATE "C" NOT NULL REFERENCES members(id),
    expires_at TEXT COLLATE "C" NOT NULL,
    used_at TEXT COLLATE "C"
  );
  CREATE TABLE sessions (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    member_id TEXT COLLATE "C" REFERENCES members(id),
    admin INTEGER NOT NULL DEFAULT 0,
    csrf_token TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
  );
  `,
  // 2: the audit log. Append-only: the trigger lets a row change only by an aggregate's count going
  // up; deleting is left to pruning by age, as in the SQLite file.
  `
  CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    account_id TEXT COLLATE "C",
    target TEXT COLLATE "C",
    detail TEXT COLLATE "C",
    source TEXT COLLATE "C",
    request_id TEXT COLLATE "C",
    count INTEGER NOT NULL DEFAULT 1,
    bucket TEXT COLLATE "C"
  );
  CREATE INDEX audit_log_by_time ON audit_log(at);
  CREATE INDEX audit_log_by_account ON audit_log(account_id, id);
  CREATE UNIQUE INDEX audit_log_buckets ON audit_log(action, source, bucket) WHERE bucket IS NOT NULL;
  CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF OLD.bucket IS NULL OR NEW.id IS DISTINCT FROM OLD.id OR NEW.at IS DISTINCT FROM OLD.at
      OR NEW.actor IS DISTINCT FROM OLD.actor OR NEW.action IS DISTINCT FROM OLD.action
      OR NEW.account_id IS DISTINCT FROM OLD.account_id OR NEW.target IS DISTINCT FROM OLD.target
      OR NEW.detail IS DISTINCT FROM OLD.detail OR NEW.source IS DISTINCT FROM OLD.source
      OR NEW.request_id IS DISTINCT FROM OLD.request_id OR NEW.bucket IS DISTINCT FROM OLD.bucket
      OR NEW.count < OLD.count THEN
      RAISE EXCEPTION 'audit records are append-only';
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
  `,
  // 3: serving nodes with their leases (a node whose lease ran out is dead: survivors settle its
  // unfinished ledger rows), and the plan table every node must share.
  `
  CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY,
    host TEXT COLLATE "C" NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
  );
  CREATE TABLE plan_table (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    plans TEXT COLLATE "C" NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL
  );
  `,
  // 4: who settled a row its node left unfinished: the node's own completion, should it still come
  // (the node was only stopped a while), overwrites the settlement and counts the request again.
  `
  ALTER TABLE usage_events ADD COLUMN settled_by TEXT COLLATE "C";
  `,
  // 5: the Redis key prefix the running nodes share (a node or CLI on another prefix would tell no node of a revocation).
  `
  CREATE TABLE redis_prefix (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    prefix TEXT COLLATE "C" NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL
  );
  `,
  // 6: which admin token an operator session was started with (a fingerprint, never the token), so
  // rotating ALVEARE_ADMIN_TOKEN on the nodes ends every operator session made with the old one.
  `
  ALTER TABLE sessions ADD COLUMN admin_token_digest TEXT COLLATE "C";
  `,
  // 7: who created a key in the dashboard, so removing that member revokes it.
  `
  ALTER TABLE api_keys ADD COLUMN created_by TEXT COLLATE "C";
  ${KEY_CREATORS_BACKFILL}
  CREATE INDEX api_keys_by_creator ON api_keys(created_by) WHERE created_by IS NOT NULL;
  `,
];

/** One lock for every migrating process, whatever node it runs on. */
const MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('alveare.schema_migrations'))";

/**
 * Applies the migrations a database has not seen, all in one transaction under
 * an advisory lock: nodes starting together wait for the first, then find
 * nothing left to do. Versions beyond this release's (a newer node migrated
 * first) are left alone: they are additive. Returns the versions applied.
 * `migrations` is this release's list (tests pass a later release's).
 */
export async function migratePostgres(pool: pg.Pool, migrations: readonly string[] = PG_MIGRATIONS): Promise<number[]> {
  return inTransaction(pool, async (client) => {
    // A migration (or waiting for another node's) may take longer than a request's statement may.
    await client.query("SET LOCAL statement_timeout = 0");
    await client.query(MIGRATION_LOCK);
    // Created only when missing: a node whose role may not create tables still opens a database migrated by `alveare migrate`.
    const known = await client.query<{ table: string | null }>("SELECT to_regclass('schema_migrations')::text AS table");
    if (known.rows[0]?.table == null) {
      await client.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
    }
    const done = new Set((await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const [index, sql] of migrations.entries()) {
      const version = index + 1;
      if (done.has(version)) continue;
      await client.query(sql);
      await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [version, new Date().toISOString()]);
      applied.push(version);
    }
    return applied;
  });
}
