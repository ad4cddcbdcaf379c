import type Database from "better-sqlite3";
import { toAccount, toKey, type AccountRow, type KeyRow } from "../rows.js";
import { dayBefore, type Account, type AccountStore, type ApiKeyRecord, type KeyCreation, type KeyLimits, type KeyLookup } from "../store.js";
import { isSqliteBusy, whileBusy } from "./busy.js";

/**
 * Accounts and keys in SQLite. Verified keys are cached until this store changes
 * an account or key, or any other connection (the CLI) commits a change to the
 * file, which SQLite's data_version reports.
 */
export class SqliteAccountStore implements AccountStore {
  private readonly statements;
  private readonly keyCache = new Map<string, KeyLookup>();
  private keyCacheVersion = -1;
  /**
   * data_version is read once per event-loop turn, not per lookup (it was ~4%
   * of a gateway request's CPU). Still exact for revocation: a change another
   * process (the CLI) commits is seen by every request read after that commit,
   * because each turn starts with a fresh read; requests read in the same turn
   * as a concurrent commit arrived before it finished. (HTTP requests are
   * authenticated in the poll phase that reads them; the flag is cleared in the
   * check phase right after.) This store's own writes clear the cache at once.
   */
  private versionCheckedThisTurn = false;
  private readonly endTurn = (): void => {
    this.versionCheckedThisTurn = false;
  };

  /**
   * `requestPath`: the connection of every request's writes (the ledger's, which does not wait for the
   * file's lock): the key's last-used time is written on it, best effort, and the key cache is checked
   * against its data_version, which the ledger's own commits leave alone and every other writer moves.
   */
  constructor(db: Database.Database, requestPath: Database.Database = db) {
    this.statements = {
      insertAccount: db.prepare("INSERT INTO accounts (id, name, plan, status, created_at) VALUES (@id, @name, @plan, @status, @createdAt)"),
      getAccount: db.prepare<[string], AccountRow>("SELECT * FROM accounts WHERE id = ?"),
      listAccounts: db.prepare<[], AccountRow>("SELECT * FROM accounts ORDER BY created_at, id"),
      updateAccount: db.prepare("UPDATE accounts SET plan = COALESCE(@plan, plan), status = COALESCE(@status, status) WHERE id = @id"),
      // One statement, so two concurrent creations cannot both pass the cap or a suspension.
      insertKey: db.prepare(
        `INSERT INTO api_keys (id, account_id, name, mode, hash, prefix, created_at, created_by)
         SELECT @id, @accountId, @name, @mode, @hash, @prefix, @createdAt, @createdBy
         WHERE EXISTS (SELECT 1 FROM accounts WHERE id = @accountId AND status = 'active')
           AND (@createdBy IS NULL OR EXISTS (SELECT 1 FROM members WHERE id = @createdBy AND account_id = @accountId))
           AND (SELECT COUNT(*) FROM api_keys WHERE account_id = @accountId AND mode = @mode AND revoked_at IS NULL) < @limit
           AND (@perDay IS NULL
                OR (SELECT COUNT(*) FROM api_keys WHERE account_id = @accountId AND mode = @mode AND created_at > @dayAgo) < @perDay)`,
      ),
      countUnrevoked: db.prepare<[string, string], { n: number }>(
        "SELECT COUNT(*) AS n FROM api_keys WHERE account_id = ? AND mode = ? AND revoked_at IS NULL",
      ),
      listKeys: db.prepare<[string], KeyRow>("SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at, id"),
      revokeKey: db.prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"),
      getKey: db.prepare<[string], KeyRow>("SELECT * FROM api_keys WHERE id = ?"),
      findKey: db.prepare<[string], KeyRow & { a_name: string; a_plan: string; a_status: Account["status"]; a_created_at: string }>(
        `SELECT k.*, a.name AS a_name, a.plan AS a_plan, a.status AS a_status, a.created_at AS a_created_at
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = ?`,
      ),
      touchKey: requestPath.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?"),
      isMember: db.prepare<[string, string], 1>("SELECT 1 FROM members WHERE id = ? AND account_id = ?").pluck(),
      // Prepared once: db.pragma() prepares a statement per call, a measurable cost per request.
      dataVersion: requestPath.prepare<[], number>("PRAGMA data_version").pluck(),
    };
  }

  async createAccount(account: Account): Promise<void> {
    await whileBusy(() => this.statements.insertAccount.run(account));
  }

  // Reads too are tried again while the file is refused: on a server's no-wait connections a reader gets
  // SQLITE_BUSY_RECOVERY at once while another process rebuilds the WAL index (it waited up to 5 s before).
  async getAccount(id: string): Promise<Account | undefined> {
    const row = await whileBusy(() => this.statements.getAccount.get(id));
    return row && toAccount(row);
  }

  async listAccounts(): Promise<Account[]> {
    return (await whileBusy(() => this.statements.listAccounts.all())).map(toAccount);
  }

  async updateAccount(id: string, change: { plan?: string | undefined; status?: Account["status"] | undefined }): Promise<boolean> {
    // Cached keys carry their account's plan and status: a change must reach the very next request.
    this.keyCache.clear();
    return whileBusy(() => this.statements.updateAccount.run({ id, plan: change.plan ?? null, status: change.status ?? null }).changes > 0);
  }

  async createKey(key: ApiKeyRecord, hash: string, limits: KeyLimits): Promise<KeyCreation> {
    const bounds = { limit: limits.unrevoked, perDay: limits.perDay ?? null, dayAgo: dayBefore(key.createdAt) };
    if (await whileBusy(() => this.statements.insertKey.run({ ...key, hash, ...bounds }).changes > 0)) return "created";
    return whileBusy((): KeyCreation => {
      const account = this.statements.getAccount.get(key.accountId);
      if (account === undefined) return "no_account";
      if (account.status !== "active") return "suspended";
      if (key.createdBy !== null && this.statements.isMember.get(key.createdBy, key.accountId) === undefined) return "no_member";
      const unrevoked = this.statements.countUnrevoked.get(key.accountId, key.mode)?.n ?? 0;
      return unrevoked >= limits.unrevoked ? "limit_reached" : "daily_limit_reached";
    });
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    return (await whileBusy(() => this.statements.listKeys.all(accountId))).map(toKey);
  }

  async getKey(keyId: string): Promise<ApiKeyRecord | undefined> {
    const row = await whileBusy(() => this.statements.getKey.get(keyId));
    return row === undefined ? undefined : toKey(row);
  }

  /** Forgets every cached key: another store on this connection revoked keys (data_version moves only for other connections' commits). */
  forgetKeys(): void {
    this.keyCache.clear();
  }

  async revokeKey(keyId: string, at: string): Promise<boolean> {
    this.keyCache.clear();
    return whileBusy(() => this.statements.revokeKey.run(at, keyId).changes > 0);
  }

  async findKeyByHash(hash: string): Promise<KeyLookup | undefined> {
    // Every request's: at once, off the event loop only when refused (see getAccount).
    try {
      return this.lookUp(hash);
    } catch (error) {
      if (!isSqliteBusy(error)) throw error;
      return whileBusy(() => this.lookUp(hash));
    }
  }

  private lookUp(hash: string): KeyLookup | undefined {
    if (!this.versionCheckedThisTurn) {
      const version = this.statements.dataVersion.get()!;
      this.versionCheckedThisTurn = true;
      setImmediate(this.endTurn);
      if (version !== this.keyCacheVersion) {
        this.keyCache.clear();
        this.keyCacheVersion = version;
      }
    }
    const cached = this.keyCache.get(hash);
    if (cached !== undefined) return cached;
    const row = this.statements.findKey.get(hash);
    if (row === undefined) return undefined;
    const found: KeyLookup = {
      key: toKey(row),
      account: { id: row.account_id, name: row.a_name, plan: row.a_plan, status: row.a_status, createdAt: row.a_created_at },
    };
    // Only keys that work are cached; a revoked or unknown key costs a lookup each time.
    if (found.key.revokedAt === null && found.account.status === "active") this.keyCache.set(hash, found);
    return found;
  }

  async touchKey(keyId: string, at: string): Promise<void> {
    this.statements.touchKey.run(at, keyId);
  }
}
