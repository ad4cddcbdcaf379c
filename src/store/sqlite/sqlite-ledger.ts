import type Database from "better-sqlite3";
import { CLIENT_CLOSED, countsAgainstQuota, NOT_DELIVERED, settledDeadNodeRequests } from "../../metering/counting-rule.js";
import type { AdmissionRecord, CompletionRecord, LedgerStore, Mode, PeriodUsage, RefusalRecord, UsageBreakdown } from "../store.js";
import { GroupWriter } from "../../group-writer.js";
import { nodeAlive, nodeClosed, thisNode, type NodeIdentity, type NodeRow } from "./nodes.js";
import { isSqliteBusy, whileBusy } from "./busy.js";
import { USAGE_QUERIES } from "./usage-queries.js";

export interface SqliteLedgerOptions {
  /**
   * The ledger of a server, which admits requests: at open it settles the
   * unfinished rows of nodes that died (one server per data dir), and it
   * registers itself as a node. CLI commands leave this off: they must never
   * settle the rows of a server running beside them.
   */
  serving?: boolean;
  /** Where a serving ledger says what it settled of dead servers' requests (the server's log). */
  warn?: ((message: string) => void) | undefined;
}

/** A ledger row a completion or settlement closes: what its aggregates are keyed by. */
interface FinishedEvent {
  account_id: string;
  mode: Mode;
  period: string;
  day: string;
  specialist: string;
}
interface Finish {
  eventId: number;
  status: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number | null;
  at: string;
}
/** Refusals of one account, mode, UTC day, key and code, summed until the next commit. */
interface RefusalRow {
  accountId: string;
  mode: Mode;
  day: string;
  keyId: string;
  code: string;
  status: number;
  requests: number;
}
/** The named parameters of every per-period read. */
interface PeriodKey {
  account: string;
  mode: string;
  period: string;
}

// A period "YYYY-MM" spans the days "YYYY-MM-01" to "YYYY-MM-31" as text; refusals are kept per day.
const REFUSALS_IN_PERIOD = "account_id = @account AND mode = @mode AND day BETWEEN @period || '-01' AND @period || '-31'";

/**
 * The usage ledger in SQLite. Ledger writes are group-committed: the writes
 * queued in one event-loop turn run in one transaction at its end
 * (GroupWriter; a SQLite commit returns at once, so every turn's writes go
 * together), and each caller's promise settles only once its write is on disk,
 * so nothing is acknowledged before it is durable. The quota counters live in memory (read from disk on first use),
 * which keeps admission exact and synchronous in this process.
 *
 * Usage is pre-aggregated in the same transactions as the ledger: per account,
 * mode and period (usage_counters, the quota), per day and specialist
 * (usage_daily, the reports) and, for refused requests, per day, key and code
 * (usage_refusals), so no usage report reads the ledger.
 */
/** A change to one row of usage_counters (no day) or usage_daily. */
interface CounterMove {
  accountId: string;
  mode: string;
  period: string;
  day?: string | undefined;
  specialist?: string | undefined;
  requests: number;
  tokens: number;
}

export class SqliteLedger implements LedgerStore {
  private readonly statements;
  private readonly node: NodeIdentity = thisNode();
  private nodeRegistered = false;
  /** Requests counted per account, mode and period: the source of truth for admission in this process. */
  private readonly counters = new Map<string, { requests: number }>();
  /** Refusals counted since the last commit, by account, mode, day, key and code. */
  private readonly pendingRefusals = new Map<string, { row: RefusalRow; committed: Promise<void> }>();

  /** Counter moves of the transaction under way, summed per row and written once per row at its end. */
  private readonly moves = new Map<string, CounterMove>();
  private readonly commits: GroupWriter<() => number | void, number | undefined>;

  constructor(db: Database.Database, options: SqliteLedgerOptions = {}) {
    // The turn's writes, then its summed counter moves, in one transaction; a rolled-back one keeps no moves for the next.
    const transaction = db.transaction((writes: Array<() => number | void>) => {
      const results = writes.map((write) => write() ?? undefined);
      this.writeMoves();
      return results;
    });
    // On a no-wait connection (openNoWaitConnection): a commit the file's lock refuses is tried again, off the event loop.
    this.commits = new GroupWriter((writes) =>
      whileBusy(() => {
        try {
          return transaction(writes);
        } catch (error) {
          // Rolled back: its counter moves, and a node row it may have registered, are not on disk.
          this.moves.clear();
          this.nodeRegistered = false;
          throw error;
        }
      }),
    );
    this.statements = {
      // The limit is enforced on the in-memory counter at admission; the file records the count.
      moveCounter: db.prepare<[string, string, string, number, number]>(
        `INSERT INTO usage_counters (account_id, mode, period, requests, tokens) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens`,
      ),
      moveDaily: db.prepare<[string, string, string, string, string, number, number]>(
        `INSERT INTO usage_daily (account_id, mode, period, day, specialist, requests, tokens) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, tokens = tokens + excluded.tokens`,
      ),
      countRefusals: db.prepare<RefusalRow>(
        `INSERT INTO usage_refusals (account_id, mode, day, key_id, code, status, requests)
         VALUES (@accountId, @mode, @day, @keyId, @code, @status, @requests)
         ON CONFLICT DO UPDATE SET requests = requests + excluded.requests`,
      ),
      // Positional parameters on the two per-request statements: binding by name looks each one up on an object.
      insertEvent: db.prepare<[string, string, string, string, string, string, string, string, string]>(
        `INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, created_at, node_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      // Only an unfinished row finishes: a row settled as not delivered is never counted twice.
      // Without RETURNING (SQLite collects returned rows in a temporary table first) when the caller knows the row's keys.
      finishKnownEvent: db.prepare<[number, number, number, number, string, number]>(
        `UPDATE usage_events SET status = ?, prompt_tokens = ?, completion_tokens = ?, latency_ms = ?, finished_at = ?
         WHERE id = ? AND status IS NULL`,
      ),
      finishEvent: db.prepare<Finish, FinishedEvent>(
        `UPDATE usage_events SET status = @status, prompt_tokens = @promptTokens, completion_tokens = @completionTokens,
         latency_ms = @latencyMs, finished_at = @at WHERE id = @eventId AND status IS NULL
         RETURNING account_id, mode, period, substr(created_at, 1, 10) AS day, specialist`,
      ),
      counter: db.prepare<[string, string, string], { requests: number; tokens: number }>(USAGE_QUERIES.counter),
      bySpecialist: db.prepare<[string, string, string], { specialist: string; n: number }>(USAGE_QUERIES.bySpecialist),
      daily: db.prepare<[string, string, string], { day: string; n: number }>(USAGE_QUERIES.daily),
      // Admitted requests from the ledger (indexed by account, mode and period) and refused ones from their aggregates;
      // the requests byStatus counts (outcomes a client was given: not delivered and unfinished rows are in neither).
      byKey: db.prepare<PeriodKey, { key_id: string; requests: number; tokens: number }>(
        `SELECT key_id, SUM(requests) AS requests, SUM(tokens) AS tokens FROM (
           SELECT key_id, COUNT(*) AS requests, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
           WHERE account_id = @account AND mode = @mode AND period = @period AND status <> 0 GROUP BY key_id
           UNION ALL
           SELECT key_id, SUM(requests), 0 FROM usage_refusals WHERE ${REFUSALS_IN_PERIOD} GROUP BY key_id
         ) GROUP BY key_id ORDER BY requests DESC, key_id`,
      ),
      // Not delivered (0) and unfinished (NULL) rows are no outcome the client saw: in no column.
      // A client that left (499) is its own column: unlike the other 4xx it counts against the quota.
      byStatus: db.prepare<PeriodKey, { success: number; client_error: number; client_closed: number; rate_limited: number; server_error: number }>(
        `SELECT COALESCE(SUM(status >= 200 AND status < 400), 0) AS success,
                COALESCE(SUM(status >= 400 AND status < 500 AND status NOT IN (429, ${CLIENT_CLOSED})), 0) AS client_error,
                COALESCE(SUM(status = ${CLIENT_CLOSED}), 0) AS client_closed,
                COALESCE(SUM(status = 429), 0) AS rate_limited,
                COALESCE(SUM(status >= 500), 0) AS server_error
         FROM usage_events WHERE account_id = @account AND mode = @mode AND period = @period`,
      ),
      refusalsByStatus: db.prepare<PeriodKey, { client_error: number; rate_limited: number; server_error: number }>(
        `SELECT COALESCE(SUM(CASE WHEN status >= 400 AND status < 500 AND status <> 429 THEN requests END), 0) AS client_error,
                COALESCE(SUM(CASE WHEN status = 429 THEN requests END), 0) AS rate_limited,
                COALESCE(SUM(CASE WHEN status >= 500 THEN requests END), 0) AS server_error
         FROM usage_refusals WHERE ${REFUSALS_IN_PERIOD}`,
      ),
      dailyTokens: db.prepare<PeriodKey, { day: string; tokens: number }>(
        `SELECT substr(created_at, 1, 10) AS day, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
         WHERE account_id = @account AND mode = @mode AND period = @period GROUP BY day ORDER BY day`,
      ),
      registerNode: db.prepare("INSERT OR IGNORE INTO nodes (id, host, pid, process_start, started_at) VALUES (?, ?, ?, ?, ?)"),
      unfinishedNodes: db.prepare<[], { node_id: string | null }>("SELECT DISTINCT node_id FROM usage_events WHERE status IS NULL"),
      getNode: db.prepare<[string], NodeRow>("SELECT id, host, pid, process_start FROM nodes WHERE id = ?"),
      unfinishedOf: db.prepare<[string | null], { id: number }>("SELECT id FROM usage_events WHERE status IS NULL AND node_id IS ?"),
    };
    if (options.serving === true) {
      const settled = db
        .transaction(() => {
          const n = this.settleDeadNodes();
          this.registerNode();
          return n;
        })
        .immediate();
      if (settled > 0) options.warn?.(settledDeadNodeRequests(settled));
    }
  }

  /**
   * Rows a dead process admitted and never completed: their clients received
   * nothing, so they are settled as not delivered and given back.
   */
  private settleDeadNodes(): number {
    const at = new Date().toISOString();
    let settled = 0;
    for (const { node_id: nodeId } of this.statements.unfinishedNodes.all()) {
      // Rows from before node ids were recorded have no writer to ask: the server that wrote them is gone.
      if (nodeId !== null && nodeAlive(this.statements.getNode.get(nodeId))) continue;
      for (const { id } of this.statements.unfinishedOf.all(nodeId)) {
        if (this.finish({ eventId: id, status: NOT_DELIVERED, promptTokens: 0, completionTokens: 0, latencyMs: null, at })) settled++;
      }
    }
    this.writeMoves();
    return settled;
  }

  /**
   * Adds to a row of usage_counters and of usage_daily. Summed in memory and
   * written by writeMoves() before the transaction commits: a busy commit writes
   * each touched row once, not twice per request.
   */
  private move(accountId: string, mode: string, period: string, day: string, specialist: string, requests: number, tokens: number): void {
    const counter = `${accountId}\u0000${mode}\u0000${period}`;
    this.addMove(counter, accountId, mode, period, undefined, undefined, requests, tokens);
    this.addMove(`${counter}\u0000${day}\u0000${specialist}`, accountId, mode, period, day, specialist, requests, tokens);
  }

  private addMove(
    key: string,
    accountId: string,
    mode: string,
    period: string,
    day: string | undefined,
    specialist: string | undefined,
    requests: number,
    tokens: number,
  ): void {
    let m = this.moves.get(key);
    if (m === undefined) {
      m = { accountId, mode, period, day, specialist, requests: 0, tokens: 0 };
      this.moves.set(key, m);
    }
    m.requests += requests;
    m.tokens += tokens;
  }

  /** Writes the summed moves; runs inside the transaction that made them. */
  private writeMoves(): void {
    for (const m of this.moves.values()) {
      if (m.day === undefined || m.specialist === undefined) this.statements.moveCounter.run(m.accountId, m.mode, m.period, m.requests, m.tokens);
      else this.statements.moveDaily.run(m.accountId, m.mode, m.period, m.day, m.specialist, m.requests, m.tokens);
    }
    this.moves.clear();
  }

  private registerNode(): void {
    if (this.nodeRegistered) return;
    const n = this.node;
    this.statements.registerNode.run(n.id, n.host, n.pid, n.processStart, new Date().toISOString());
    this.nodeRegistered = true;
  }

  /** Closes a ledger row and moves its aggregates by the counting rule; false when it was already closed. */
  private finish(r: Finish): boolean {
    const event = this.statements.finishEvent.get(r);
    if (event === undefined) return false;
    this.moveFinished(event, r);
    return true;
  }

  /** `finish` for a completion that names the row's day and specialist (the admission's own values): no read back. */
  private finishKnown(r: CompletionRecord, day: string, specialist: string): void {
    if (this.statements.finishKnownEvent.run(r.status, r.promptTokens, r.completionTokens, r.latencyMs, r.at, r.eventId).changes === 0) return;
    this.moveFinished({ account_id: r.accountId, mode: r.mode, period: r.period, day, specialist }, r);
  }

  private moveFinished(event: FinishedEvent, r: { status: number; promptTokens: number; completionTokens: number }): void {
    const { account_id: account, mode, period, day, specialist } = event;
    if (countsAgainstQuota(r.status)) this.move(account, mode, period, day, specialist, 0, r.promptTokens + r.completionTokens);
    else this.move(account, mode, period, day, specialist, -1, 0);
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

  async admit(r: AdmissionRecord): Promise<number | undefined> {
    let counter: { requests: number };
    try {
      counter = this.counter(r.accountId, r.mode, r.period);
    } catch (error) {
      // Its first read of the month's counter, refused while another process rebuilds the WAL index: off the event loop.
      if (!isSqliteBusy(error)) throw error;
      counter = await whileBusy(() => this.counter(r.accountId, r.mode, r.period));
    }
    if (counter.requests >= r.limit) return undefined;
    counter.requests++;
    const admitted = this.commits.add(() => {
      this.registerNode();
      this.move(r.accountId, r.mode, r.period, r.at.slice(0, 10), r.specialist, 1, 0);
      const inserted = this.statements.insertEvent.run(
        r.requestId,
        r.accountId,
        r.keyId,
        r.mode,
        r.period,
        r.endpoint,
        r.specialist,
        r.at,
        this.node.id,
      );
      return Number(inserted.lastInsertRowid);
    });
    // Not written (the file locked past the busy timeout, full, failing): nothing was admitted, so nothing is counted.
    admitted.catch(() => counter.requests--);
    return admitted;
  }

  async complete(r: CompletionRecord): Promise<void> {
    // The in-memory counter moves now, so the very next admission sees the request given back.
    if (!countsAgainstQuota(r.status)) this.counter(r.accountId, r.mode, r.period).requests--;
    const { day, specialist } = r;
    await this.commits.add(() => {
      if (day !== undefined && specialist !== undefined) this.finishKnown(r, day, specialist);
      else this.finish(r);
    });
  }

  async countRefusal(r: RefusalRecord): Promise<void> {
    // A burst over a limit is many refusals of one key and code: they are summed in memory and the
    // turn's commit writes one row update per distinct account, mode, day, key and code, not one per request.
    const day = r.at.slice(0, 10);
    const key = JSON.stringify([r.accountId, r.mode, day, r.keyId, r.code]);
    const pending = this.pendingRefusals.get(key);
    if (pending !== undefined) {
      pending.row.requests++;
      return pending.committed;
    }
    const row: RefusalRow = { accountId: r.accountId, mode: r.mode, day, keyId: r.keyId, code: r.code, status: r.status, requests: 1 };
    const forget = (): void => {
      if (this.pendingRefusals.get(key)?.row === row) this.pendingRefusals.delete(key);
    };
    const committed = this.commits
      .add(() => {
        forget();
        this.statements.countRefusals.run(row);
      })
      .then(
        () => undefined,
        (error: unknown) => {
          forget(); // a failed commit must not leave later refusals adding to a row that is never written
          throw error;
        },
      );
    this.pendingRefusals.set(key, { row, committed });
    return committed;
  }

  async periodUsage(accountId: string, mode: Mode, period: string): Promise<PeriodUsage> {
    await this.settled();
    return whileBusy(() => {
      const counter = this.statements.counter.get(accountId, mode, period);
      // fromEntries defines own properties, so a specialist id such as "__proto__" stays a plain key.
      const bySpecialist = Object.fromEntries(this.statements.bySpecialist.all(accountId, mode, period).map((row) => [row.specialist, row.n]));
      return { requests: counter?.requests ?? 0, tokens: counter?.tokens ?? 0, bySpecialist };
    });
  }

  async dailyRequests(accountId: string, mode: Mode, period: string): Promise<Record<string, number>> {
    await this.settled();
    return whileBusy(() => Object.fromEntries(this.statements.daily.all(accountId, mode, period).map((row) => [row.day, row.n])));
  }

  async usageBreakdown(accountId: string, mode: Mode, period: string): Promise<UsageBreakdown> {
    await this.settled();
    // Reads on the no-wait connection, which a writer starting a checkpoint or recovery can briefly refuse too.
    return whileBusy(() => this.breakdown(accountId, mode, period));
  }

  private breakdown(accountId: string, mode: Mode, period: string): UsageBreakdown {
    const key: PeriodKey = { account: accountId, mode, period };
    const admitted = this.statements.byStatus.get(key);
    const refused = this.statements.refusalsByStatus.get(key);
    return {
      byKey: this.statements.byKey.all(key).map((r) => ({ keyId: r.key_id, requests: r.requests, tokens: r.tokens })),
      byStatus: {
        success: admitted?.success ?? 0,
        clientError: (admitted?.client_error ?? 0) + (refused?.client_error ?? 0),
        clientClosed: admitted?.client_closed ?? 0,
        rateLimited: (admitted?.rate_limited ?? 0) + (refused?.rate_limited ?? 0),
        serverError: (admitted?.server_error ?? 0) + (refused?.server_error ?? 0),
      },
      dailyTokens: Object.fromEntries(this.statements.dailyTokens.all(key).map((row) => [row.day, row.tokens])),
    };
  }

  /** Resolves once every write queued so far is committed, so a read after it sees them. */
  private settled(): Promise<unknown> {
    return this.commits.add(() => undefined);
  }

  /** Commits what is queued and marks this process's node gone. */
  async close(): Promise<void> {
    try {
      await this.settled();
    } finally {
      nodeClosed(this.node.id);
    }
  }
}
