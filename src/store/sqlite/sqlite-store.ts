import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type {
  Account, AdmissionRecord, ApiKeyRecord, CompletionRecord, KeyLookup, Member, Mode, PeriodUsage, Session, Store,
} from "../store.js";
import { DashboardQueries } from "./dashboard-queries.js";
import { MIGRATIONS } from "./migrations.js";

interface KeyRow {
  id: string; account_id: string; name: string | null; mode: Mode; prefix: string;
  created_at: string; last_used_at: string | null; revoked_at: string | null;
}
interface AccountRow { id: string; name: string; plan: string; status: Account["status"]; created_at: string }

const toKey = (r: KeyRow): ApiKeyRecord => ({
  id: r.id, accountId: r.account_id, name: r.name, mode: r.mode, prefix: r.prefix,
  createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at,
});
interface MemberRow { id: string; account_id: string; email: string; password_hash: string | null; created_at: string }
const toMember = (r: MemberRow): Member => ({ id: r.id, accountId: r.account_id, email: r.email, passwordHash: r.password_hash, createdAt: r.created_at });
interface SessionRow { token_hash: string; member_id: string | null; admin: number; csrf_token: string; expires_at: string }

const toAccount = (r: AccountRow): Account => ({ id: r.id, name: r.name, plan: r.plan, status: r.status, createdAt: r.created_at });

/**
 * Runs the migrations a database has not seen yet, one per write transaction.
 * The version is read inside the transaction, so two processes opening a new
 * file at once (a server and a CLI command) cannot both apply the same step.
 */
export function migrate(db: Database.Database): void {
  const step = db.transaction((): boolean => {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version >= MIGRATIONS.length) return false;
    db.exec(MIGRATIONS[version]!);
    db.pragma(`user_version = ${version + 1}`);
    return true;
  });
  while (step.immediate()) {
    // next version
  }
}

interface PendingWrite {
  run: () => number | void;
  result?: number | void;
  resolve: (value: number | undefined) => void;
  reject: (error: unknown) => void;
}

/**
 * The store in one SQLite file. WAL mode: readers never block the writer, and a
 * committed transaction survives the process being killed at any moment
 * (synchronous=NORMAL only risks the last transactions on power loss, not on a
 * process crash). better-sqlite3 is synchronous, so each method is atomic within
 * this process by construction and inside a transaction on disk.
 *
 * The hot path is kept cheap two ways. Ledger writes are group-committed: every
 * write of one event-loop turn goes into one transaction, and each caller's
 * promise settles only once its write is on disk, so nothing is acknowledged
 * before it is durable. The quota counters live in memory (read from disk on
 * first use), which keeps admission exact and synchronous in this process.
 * Verified keys are cached until any other connection (the CLI) commits a change
 * to the file, which SQLite's data_version reports.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly statements;
  private readonly dashboardQueries: DashboardQueries;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    migrate(this.db);
    const db = this.db;
    this.dashboardQueries = new DashboardQueries(db, () => this.write(() => undefined));
    this.statements = {
      insertAccount: db.prepare("INSERT INTO accounts (id, name, plan, status, created_at) VALUES (@id, @name, @plan, @status, @createdAt)"),
      getAccount: db.prepare<[string], AccountRow>("SELECT * FROM accounts WHERE id = ?"),
      listAccounts: db.prepare<[], AccountRow>("SELECT * FROM accounts ORDER BY created_at, id"),
      updateAccount: db.prepare(
        "UPDATE accounts SET plan = COALESCE(@plan, plan), status = COALESCE(@status, status) WHERE id = @id",
      ),
      insertKey: db.prepare(
        "INSERT INTO api_keys (id, account_id, name, mode, hash, prefix, created_at) VALUES (@id, @accountId, @name, @mode, @hash, @prefix, @createdAt)",
      ),
      listKeys: db.prepare<[string], KeyRow>("SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at, id"),
      revokeKey: db.prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"),
      findKey: db.prepare<[string], KeyRow & { a_name: string; a_plan: string; a_status: Account["status"]; a_created_at: string }>(
        `SELECT k.*, a.name AS a_name, a.plan AS a_plan, a.status AS a_status, a.created_at AS a_created_at
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = ?`,
      ),
      touchKey: db.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?"),
      // Prepared once: db.pragma() prepares a statement per call, a measurable cost per request.
      dataVersion: db.prepare<[], number>("PRAGMA data_version").pluck(),
      ensureCounter: db.prepare("INSERT OR IGNORE INTO usage_counters (account_id, mode, period) VALUES (?, ?, ?)"),
      // The limit is enforced on the in-memory counter at admission; the file records the count.
      countRequest: db.prepare("UPDATE usage_counters SET requests = requests + 1 WHERE account_id = ? AND mode = ? AND period = ?"),
      insertEvent: db.prepare(
        `INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, created_at)
         VALUES (@requestId, @accountId, @keyId, @mode, @period, @endpoint, @specialist, @at)`,
      ),
      finishEvent: db.prepare(
        `UPDATE usage_events SET status = @status, prompt_tokens = @promptTokens, completion_tokens = @completionTokens,
         latency_ms = @latencyMs, finished_at = @at WHERE id = @eventId`,
      ),
      addTokens: db.prepare("UPDATE usage_counters SET tokens = tokens + ? WHERE account_id = ? AND mode = ? AND period = ?"),
      refund: db.prepare("UPDATE usage_counters SET requests = requests - 1 WHERE account_id = ? AND mode = ? AND period = ?"),
      counter: db.prepare<[string, string, string], { requests: number; tokens: number }>(
        "SELECT requests, tokens FROM usage_counters WHERE account_id = ? AND mode = ? AND period = ?",
      ),
      daily: db.prepare<[string, string, string], { day: string; n: number }>(
        `SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS n FROM usage_events
         WHERE account_id = ? AND mode = ? AND period = ? AND (status IS NULL OR status < 400 OR status = 499)
         GROUP BY day ORDER BY day`,
      ),
      insertMember: db.prepare("INSERT INTO members (id, account_id, email, password_hash, created_at) VALUES (@id, @accountId, @email, @passwordHash, @createdAt)"),
      getMember: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE id = ?"),
      memberByEmail: db.prepare<[string], MemberRow>("SELECT * FROM members WHERE email = ?"),
      setPassword: db.prepare("UPDATE members SET password_hash = ? WHERE id = ?"),
      insertInvitation: db.prepare("INSERT INTO invitations (token_hash, member_id, expires_at) VALUES (?, ?, ?)"),
      useInvitation: db.prepare<[string, string, string], string>(
        "UPDATE invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING member_id",
      ).pluck(),
      insertSession: db.prepare("INSERT INTO sessions (token_hash, member_id, admin, csrf_token, expires_at) VALUES (@tokenHash, @memberId, @admin, @csrfToken, @expiresAt)"),
      findSession: db.prepare<[string, string], SessionRow>("SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?"),
      deleteSession: db.prepare("DELETE FROM sessions WHERE token_hash = ?"),
      bySpecialist: db.prepare<[string, string, string], { specialist: string; n: number }>(
        `SELECT specialist, COUNT(*) AS n FROM usage_events
         WHERE account_id = ? AND mode = ? AND period = ? AND (status IS NULL OR status < 500)
         GROUP BY specialist ORDER BY n DESC, specialist`,
      ),
    };
    this.writeBatch = db.transaction((writes: PendingWrite[]) => {
      for (const w of writes) w.result = w.run();
    });
  }

  /** Queues a write for this turn's transaction; resolves once it is committed. */
  private write(run: () => number | void): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
      this.pending.push({ run, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const writes = this.pending;
    this.pending = [];
    if (writes.length === 0) return;
    try {
      this.writeBatch(writes);
    } catch (error) {
      for (const w of writes) w.reject(error);
      return;
    }
    for (const w of writes) w.resolve(w.result ?? undefined);
  }

  private counter(accountId: string, mode: Mode, period: string): { requests: number } {
    const key = `${accountId}\u0000${mode}\u0000${period}`;
    let counter = this.counters.get(key);
    if (counter === undefined) {
      counter = { requests: this.statements.counter.get(accountId, mode, period)?.requests ?? 0 };
      this.counters.set(key, counter);
    }
    return counter;
  }

  private readonly writeBatch: (writes: PendingWrite[]) => void;
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  /** Requests counted per account, mode and period: the source of truth for admission in this process. */
  private readonly counters = new Map<string, { requests: number }>();
  private readonly keyCache = new Map<string, KeyLookup>();
  private keyCacheVersion = -1;

  async createAccount(account: Account): Promise<void> {
    this.statements.insertAccount.run(account);
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const row = this.statements.getAccount.get(id);
    return row && toAccount(row);
  }

  async listAccounts(): Promise<Account[]> {
    return this.statements.listAccounts.all().map(toAccount);
  }

  async updateAccount(id: string, change: { plan?: string | undefined; status?: Account["status"] | undefined }): Promise<boolean> {
    // Cached keys carry their account's plan and status: a change must reach the very next request.
    this.keyCache.clear();
    return this.statements.updateAccount.run({ id, plan: change.plan ?? null, status: change.status ?? null }).changes > 0;
  }

  async createKey(key: ApiKeyRecord, hash: string): Promise<void> {
    this.statements.insertKey.run({ ...key, hash });
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    return this.statements.listKeys.all(accountId).map(toKey);
  }

  async revokeKey(keyId: string, at: string): Promise<boolean> {
    this.keyCache.clear();
    return this.statements.revokeKey.run(at, keyId).changes > 0;
  }

  async findKeyByHash(hash: string): Promise<KeyLookup | undefined> {
    const version = this.statements.dataVersion.get()!;
    if (version !== this.keyCacheVersion) {
      this.keyCache.clear();
      this.keyCacheVersion = version;
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

  async admit(r: AdmissionRecord): Promise<number | undefined> {
    const counter = this.counter(r.accountId, r.mode, r.period);
    if (counter.requests >= r.limit) return undefined;
    counter.requests++;
    return this.write(() => {
      this.statements.ensureCounter.run(r.accountId, r.mode, r.period);
      this.statements.countRequest.run(r.accountId, r.mode, r.period);
      return Number(this.statements.insertEvent.run(r).lastInsertRowid);
    });
  }

  async complete(r: CompletionRecord): Promise<void> {
    if (r.refund) this.counter(r.accountId, r.mode, r.period).requests--;
    await this.write(() => {
      this.statements.finishEvent.run(r);
      if (r.refund) this.statements.refund.run(r.accountId, r.mode, r.period);
      else this.statements.addTokens.run(r.promptTokens + r.completionTokens, r.accountId, r.mode, r.period);
    });
  }

  async periodUsage(accountId: string, mode: Mode, period: string): Promise<PeriodUsage> {
    await this.write(() => undefined); // read after every write queued so far has landed
    const counter = this.statements.counter.get(accountId, mode, period);
    const bySpecialist: Record<string, number> = {};
    for (const row of this.statements.bySpecialist.all(accountId, mode, period)) bySpecialist[row.specialist] = row.n;
    return { requests: counter?.requests ?? 0, tokens: counter?.tokens ?? 0, bySpecialist };
  }

  async dailyRequests(accountId: string, mode: Mode, period: string): Promise<Record<string, number>> {
    await this.write(() => undefined);
    const days: Record<string, number> = {};
    for (const row of this.statements.daily.all(accountId, mode, period)) days[row.day] = row.n;
    return days;
  }

  async createMember(member: Member): Promise<void> {
    this.statements.insertMember.run(member);
  }

  async getMember(id: string): Promise<Member | undefined> {
    const row = this.statements.getMember.get(id);
    return row && toMember(row);
  }

  async findMemberByEmail(email: string): Promise<Member | undefined> {
    const row = this.statements.memberByEmail.get(email);
    return row && toMember(row);
  }

  async setMemberPassword(id: string, passwordHash: string): Promise<void> {
    this.statements.setPassword.run(passwordHash, id);
  }

  async createInvitation(tokenHash: string, memberId: string, expiresAt: string): Promise<void> {
    this.statements.insertInvitation.run(tokenHash, memberId, expiresAt);
  }

  async useInvitation(tokenHash: string, now: string): Promise<string | undefined> {
    return this.statements.useInvitation.get(now, tokenHash, now);
  }

  async createSession(session: Session): Promise<void> {
    this.statements.insertSession.run({ ...session, admin: session.admin ? 1 : 0 });
  }

  async findSession(tokenHash: string, now: string): Promise<Session | undefined> {
    const row = this.statements.findSession.get(tokenHash, now);
    return row && { tokenHash: row.token_hash, memberId: row.member_id, admin: row.admin === 1, csrfToken: row.csrf_token, expiresAt: row.expires_at };
  }

  async deleteSession(tokenHash: string): Promise<void> {
    this.statements.deleteSession.run(tokenHash);
  }

  /** For tests and operators: SQLite's own consistency check. */
  integrityCheck(): string {
    return this.db.pragma("integrity_check", { simple: true }) as string;
  }

  findInvitation(tokenHash: string) {
    return this.dashboardQueries.findInvitation(tokenHash);
  }

  listMembers(accountId: string) {
    return this.dashboardQueries.listMembers(accountId);
  }

  usageBreakdown(accountId: string, mode: Mode, period: string) {
    return this.dashboardQueries.usageBreakdown(accountId, mode, period);
  }

  async close(): Promise<void> {
    this.flush();
    if (this.db.open) this.db.close();
  }
}
