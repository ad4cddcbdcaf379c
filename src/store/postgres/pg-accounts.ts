import type pg from "pg";
import { dayBefore, type Account, type AccountStore, type ApiKeyRecord, type KeyCreation, type KeyLimits, type KeyLookup } from "../store.js";
import { inTransaction, requestQuery } from "./pg-pool.js";
import { holdsNul } from "./pg-text.js";
import { toAccount, toKey, type AccountRow, type KeyRow } from "../rows.js";

export const KEY_COLUMNS = "id, account_id, name, mode, prefix, created_at, last_used_at, revoked_at, created_by";

/**
 * Accounts and keys in PostgreSQL. No cache: every node reads the row, so a
 * revocation or a plan change made on any node reaches the very next lookup.
 */
export class PgAccountStore implements AccountStore {
  constructor(
    private readonly pool: pg.Pool,
    /** Where the key lookup of a request runs (a server's request pool). */
    private readonly requests: pg.Pool = pool,
  ) {}

  async createAccount(a: Account): Promise<void> {
    await this.pool.query("INSERT INTO accounts (id, name, plan, status, created_at) VALUES ($1, $2, $3, $4, $5)", [
      a.id,
      a.name,
      a.plan,
      a.status,
      a.createdAt,
    ]);
  }

  async getAccount(id: string): Promise<Account | undefined> {
    if (holdsNul(id)) return undefined;
    const { rows } = await this.pool.query<AccountRow>("SELECT * FROM accounts WHERE id = $1", [id]);
    return rows[0] && toAccount(rows[0]);
  }

  async listAccounts(): Promise<Account[]> {
    //: ids order bytewise, as SQLite orders them, whatever the database's locale.
    const { rows } = await this.pool.query<AccountRow>("SELECT * FROM accounts ORDER BY created_at, id");
    return rows.map(toAccount);
  }

  async updateAccount(id: string, change: { plan?: string | undefined; status?: Account["status"] | undefined }): Promise<boolean> {
    if (holdsNul(id)) return false;
    const r = await this.pool.query("UPDATE accounts SET plan = COALESCE($2, plan), status = COALESCE($3, status) WHERE id = $1", [
      id,
      change.plan ?? null,
      change.status ?? null,
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  async createKey(key: ApiKeyRecord, hash: string, limits: KeyLimits): Promise<KeyCreation> {
    // The account row is locked first; the count is a later statement, so it sees every key a
    // creation on another node committed while this one waited for the lock.
    return inTransaction(this.pool, async (client) => {
      const account = await client.query<{ status: Account["status"] }>("SELECT status FROM accounts WHERE id = $1 FOR UPDATE", [key.accountId]);
      const status = account.rows[0]?.status;
      if (status === undefined) return "no_account";
      if (status !== "active") return "suspended";
      // A member's removal locks the account row too, so this reads the member after any removal committed;
      // FOR SHARE reads the row as committed now whatever the isolation level (a snapshot would not).
      if (key.createdBy !== null) {
        const member = await client.query("SELECT 1 FROM members WHERE id = $1 AND account_id = $2 FOR SHARE", [key.createdBy, key.accountId]);
        if (member.rowCount === 0) return "no_member";
      }
      const { rows } = await client.query<{ n: number }>(
        "SELECT COUNT(*)::integer AS n FROM api_keys WHERE account_id = $1 AND mode = $2 AND revoked_at IS NULL",
        [key.accountId, key.mode],
      );
      if ((rows[0]?.n ?? 0) >= limits.unrevoked) return "limit_reached";
      if (limits.perDay !== undefined) {
        const recent = await client.query<{ n: number }>(
          "SELECT COUNT(*)::integer AS n FROM api_keys WHERE account_id = $1 AND mode = $2 AND created_at > $3",
          [key.accountId, key.mode, dayBefore(key.createdAt)],
        );
        if ((recent.rows[0]?.n ?? 0) >= limits.perDay) return "daily_limit_reached";
      }
      await client.query(
        "INSERT INTO api_keys (id, account_id, name, mode, hash, prefix, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [key.id, key.accountId, key.name, key.mode, hash, key.prefix, key.createdAt, key.createdBy],
      );
      return "created";
    });
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    if (holdsNul(accountId)) return [];
    const { rows } = await this.pool.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`, [accountId]);
    return rows.map(toKey);
  }

  async getKey(keyId: string): Promise<ApiKeyRecord | undefined> {
    if (holdsNul(keyId)) return undefined;
    const { rows } = await this.pool.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1`, [keyId]);
    return rows[0] && toKey(rows[0]);
  }

  async revokeKey(keyId: string, at: string): Promise<boolean> {
    if (holdsNul(keyId)) return false;
    const r = await this.pool.query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2", [at, keyId]);
    return (r.rowCount ?? 0) > 0;
  }

  async findKeyByHash(hash: string): Promise<KeyLookup | undefined> {
    // On every request with a key the node has not seen: cut like the request's other statements.
    const { rows } = await requestQuery<KeyRow & { a_name: string; a_plan: string; a_status: Account["status"]; a_created_at: string }>(
      this.requests,
      `SELECT k.id, k.account_id, k.name, k.mode, k.prefix, k.created_at, k.last_used_at, k.revoked_at, k.created_by,
              a.name AS a_name, a.plan AS a_plan, a.status AS a_status, a.created_at AS a_created_at
       FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = $1`,
      [hash],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    return {
      key: toKey(row),
      account: { id: row.account_id, name: row.a_name, plan: row.a_plan, status: row.a_status, createdAt: row.a_created_at },
    };
  }

  async touchKey(keyId: string, at: string): Promise<void> {
    // Nodes touch a key out of order: the time only moves forward.
    await this.pool.query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)", [at, keyId]);
  }
}
