import Database from "better-sqlite3";
import { countsAgainstQuota, NOT_DELIVERED } from "../../metering/counting-rule.js";
import type {
  Account, AdmissionRecord, ApiKeyRecord, CompletionRecord, KeyCreation, KeyLookup, Member, Mode, PeriodUsage, Session, Store,
} from "../store.js";
import { prepareDatabaseFile, restrictSidecars } from "./file-modes.js";
import { SqliteAuditLog } from "./audit-log.js";
import { DashboardQueries } from "./dashboard-queries.js";
import { MIGRATIONS } from "./migrations.js";
import { nodeAlive, nodeClosed, thisNode, type NodeIdentity, type NodeRow } from "./nodes.js";
import { USAGE_QUERIES } from "./usage-queries.js";

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
    const migration = MIGRATIONS[version];
    if (migration === undefined) return false;
    if (typeof migration === "string") db.exec(migration);
    else migration(db);
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

export interface SqliteStoreOptions {
  /**
   * The store of a server, which admits requests: at open it settles the
   * unfinished ledger rows of nodes that died (one server per data dir), and it
   * registers itself as a node. CLI commands leave this off: they must never
   * settle the rows of a server running beside them.
   */
  serving?: boolean;
}

/** A ledger row a completion or settlement closes: what its aggregates are keyed by. */
interface FinishedEvent { account_id: string; mode: Mode; period: string; day: string; specialist: string }

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
 *
 * Usage is pre-aggregated in the same transactions as the ledger: per account,
 * mode and period (usage_counters, the quota) and per day and specialist
 * (usage_daily, the reports), so no report reads the ledger.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly statements;
  private readonly node: NodeIdentity = thisNode();
  private nodeRegistered = false;
  private readonly dashboardQueries: DashboardQueries;
  readonly audit: SqliteAuditLog;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    if (path !== ":memory:") prepareDatabaseFile(path);
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    if (path !== ":memory:") restrictSidecars(path);
    migrate(this.db);
    const db = this.db;
    this.dashboardQueries = new DashboardQueries(db, () => this.write(() => undefined));
    this.audit = new SqliteAuditLog(db);
    this.statements = {
      insertAccount: db.prepare("INSERT INTO accounts (id, name, plan, status, created_at) VALUES (@id, @name, @plan, @status, @createdAt)"),
      getAccount: db.prepare<[string], AccountRow>("SELECT * FROM accounts WHERE id = ?"),
      listAccounts: db.prepare<[], AccountRow>("SELECT * FROM accounts ORDER BY created_at, id"),
      updateAccount: db.prepare(
        "UPDATE accounts SET plan = COALESCE(@plan, plan), status = COALESCE(@status, status) WHERE id = @id",
      ),
      // One statement, so two concurrent creations cannot both pass the cap or a suspension.
      insertKey: db.prepare(
        `INSERT INTO api_keys (id, account_id, name, mode, hash, prefix, created_at)
         SELECT @id, @accountId, @name, @mode, @hash, @prefix, @createdAt
         WHERE EXISTS (SELECT 1 FROM accounts WHERE id = @accountId AND status = 'active')
           AND (SELECT COUNT(*) FROM api_keys WHERE account_id = @accountId AND mode = @mode AND revoked_at IS NULL) < @limit`,
      ),
      listKeys: db.prepare<[string], KeyRow>("SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at, id"),
      revokeKey: db.prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"),
      getKey: db.prepare<[string], KeyRow>("SELECT * FROM api_keys WHERE id = ?"),
      findKey: db.prepare<[string], KeyRow & { a_name: string; a_plan: string; a_status: Account["status"]; a_created_at: string }>(
        `SELECT k.*, a.name AS a_name, a.plan AS a_plan, a.status AS a_status, a.created_at AS a_created_at
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.hash = ?`,
      ),
      touchKey: db.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?"),
      // Prepared once: db.pragma() prepares a statement per call, a measurable cost per request.
      dataVersion: db.prepare<[], number>("PRAGMA data_version").pluck(),
      // The limit is enforced on the in-memory counter at admission; the file records the count.
      countRequest: db.prepare(
        `INSERT INTO usage_counters (account_id, mode, period, requests) VALUES (?, ?, ?, 1)
         ON CONFLICT DO UPDATE SET requests = requests + 1`,
      ),
      countDaily: db.prepare(
        `INSERT INTO usage_daily (account_id, mode, period, day, specialist, requests) VALUES (?, ?, ?, substr(?, 1, 10), ?, 1)
         ON CONFLICT DO UPDATE SET requests = requests + 1`,
      ),
      insertEvent: db.prepare(
        `INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, created_at, node_id)
         VALUES (@requestId, @accountId, @keyId, @mode, @period, @endpoint, @specialist, @at, @nodeId)`,
      ),
      // Only an unfinished row finishes: a row settled as not delivered is never counted twice.
      finishEvent: db.prepare<{ eventId: number; status: number; promptTokens: number; completionTokens: number; latencyMs: number | null; at: string }, FinishedEvent>(
        `UPDATE usage_events SET status = @status, prompt_tokens = @promptTokens, completion_tokens = @completionTokens,
         latency_ms = @latencyMs, finished_at = @at WHERE id = @eventId AND status IS NULL
         RETURNING account_id, mode, period, substr(created_at, 1, 10) AS day, specialist`,
      ),
      addTokens: db.prepare("UPDATE usage_counters SET tokens = tokens + ? WHERE account_id = ? AND mode = ? AND period = ?"),
      addDailyTokens: db.prepare(
        "UPDATE usage_daily SET tokens = tokens + ? WHERE account_id = ? AND mode = ? AND period = ? AND day = ? AND specialist = ?",
      ),
      giveBack: db.prepare("UPDATE usage_counters SET requests = requests - 1 WHERE account_id = ? AND mode = ? AND period = ?"),
      giveBackDaily: db.prepare(
        "UPDATE usage_daily SET requests = requests - 1 WHERE account_id = ? AND mode = ? AND period = ? AND day = ? AND specialist = ?",
      ),
      counter: db.prepare<[string, string, string], { requests: number; tokens: number }>(USAGE_QUERIES.counter),
      bySpecialist: db.prepare<[string, string, string], { specialist: string; n: number }>(USAGE_QUERIES.bySpecialist),
      daily: db.prepare<[string, string, string], { day: string; n: number }>(USAGE_QUERIES.daily),
      registerNode: db.prepare("INSERT OR IGNORE INTO nodes (id, host, pid, process_start, started_at) VALUES (?, ?, ?, ?, ?)"),
      unfinishedNodes: db.prepare<[], { node_id: string | null }>("SELECT DISTINCT node_id FROM usage_events WHERE status IS NULL"),
      getNode: db.prepare<[string], NodeRow>("SELECT id, host, pid, process_start FROM nodes WHERE id = ?"),
      unfinishedOf: db.prepare<[string | null], { id: number }>("SELECT id FROM usage_events WHERE status IS NULL AND node_id IS ?"),
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
    };
    this.writeBatch = db.transaction((writes: PendingWrite[]) => {
      for (const w of writes) w.result = w.run();
    });
    if (options.serving === true) {
      this.db.transaction(() => {
        this.settleDeadNodes();
        this.registerNode();
      }).immediate();
    }
  }

  /**
   * Rows a dead process admitted and never completed: their clients received
   * nothing, so they are settled as not delivered and given back.
   */
  private settleDeadNodes(): void {
    const at = new Date().toISOString();
    for (const { node_id: nodeId } of this.statements.unfinishedNodes.all()) {
      // Rows from before node ids were recorded have no writer to ask: the server that wrote them is gone.
      if (nodeId !== null && nodeAlive(this.statements.getNode.get(nodeId))) continue;
      for (const { id } of this.statements.unfinishedOf.all(nodeId)) {
        this.finish({ eventId: id, status: NOT_DELIVERED, promptTokens: 0, completionTokens: 0, latencyMs: null, at });
      }
    }
  }

  private registerNode(): void {
    if (this.nodeRegistered) return;
    const n = this.node;
    this.statements.registerNode.run(n.id, n.host, n.pid, n.processStart, new Date().toISOString());
    this.nodeRegistered = true;
  }

  /** Closes a ledger row and moves its aggregates by the counting rule; false when it was already closed. */
  private finish(r: { eventId: number; status: number; promptTokens: number; completionTokens: number; latencyMs: number | null; at: string }): boolean {
    const event = this.statements.finishEvent.get(r);
    if (event === undefined) return false;
    const { account_id: account, mode, period, day, specialist } = event;
    if (countsAgainstQuota(r.status)) {
      const tokens = r.promptTokens + r.completionTokens;
      this.statements.addTokens.run(tokens, account, mode, period);
      this.statements.addDailyTokens.run(tokens, account, mode, period, day, specialist);
    } else {
      this.statements.giveBack.run(account, mode, period);
      this.statements.giveBackDaily.run(account, mode, period, day, specialist);
    }
    return true;
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

  async createKey(key: ApiKeyRecord, hash: string, maxUnrevoked: number): Promise<KeyCreation> {
    if (this.statements.insertKey.run({ ...key, hash, limit: maxUnrevoked }).changes > 0) return "created";
    const account = this.statements.getAccount.get(key.accountId);
    if (account === undefined) return "no_account";
    return account.status === "active" ? "limit_reached" : "suspended";
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    return this.statements.listKeys.all(accountId).map(toKey);
  }

  async getKey(keyId: string): Promise<ApiKeyRecord | undefined> {
    const row = this.statements.getKey.get(keyId);
    return row === undefined ? undefined : toKey(row);
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
      this.registerNode();
      this.statements.countRequest.run(r.accountId, r.mode, r.period);
      this.statements.countDaily.run(r.accountId, r.mode, r.period, r.at, r.specialist);
      return Number(this.statements.insertEvent.run({ ...r, nodeId: this.node.id }).lastInsertRowid);
    });
  }

  async complete(r: CompletionRecord): Promise<void> {
    // The in-memory counter moves now, so the very next admission sees the request given back.
    if (!countsAgainstQuota(r.status)) this.counter(r.accountId, r.mode, r.period).requests--;
    await this.write(() => {
      this.finish(r);
    });
  }

  async periodUsage(accountId: string, mode: Mode, period: string): Promise<PeriodUsage> {
    await this.write(() => undefined); // read after every write queued so far has landed
    const counter = this.statements.counter.get(accountId, mode, period);
    // fromEntries defines own properties, so a specialist id such as "__proto__" stays a plain key.
    const bySpecialist = Object.fromEntries(this.statements.bySpecialist.all(accountId, mode, period).map((row) => [row.specialist, row.n]));
    return { requests: counter?.requests ?? 0, tokens: counter?.tokens ?? 0, bySpecialist };
  }

  async dailyRequests(accountId: string, mode: Mode, period: string): Promise<Record<string, number>> {
    await this.write(() => undefined);
    return Object.fromEntries(this.statements.daily.all(accountId, mode, period).map((row) => [row.day, row.n]));
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
    this.db.transaction(() => {
      this.statements.setPassword.run(passwordHash, id);
      this.db.prepare("DELETE FROM sessions WHERE member_id = ?").run(id);
    })();
  }

  async createInvitation(tokenHash: string, memberId: string, expiresAt: string): Promise<void> {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM invitations WHERE member_id = ? AND used_at IS NULL").run(memberId);
      this.statements.insertInvitation.run(tokenHash, memberId, expiresAt);
    })();
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
    nodeClosed(this.node.id);
    if (this.db.open) this.db.close();
  }
}
