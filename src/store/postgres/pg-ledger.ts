import type pg from "pg";
import { CLIENT_CLOSED, countsAgainstQuota } from "../../metering/counting-rule.js";
import { AdmissionBatch } from "./pg-admissions.js";
import { CompletionBatch } from "./pg-completions.js";
import { CompletionRetryQueue, isTransientDatabaseError } from "./completion-retry.js";
import { isUnansweredStatement } from "./connection-failure.js";
import { requestQuery, STATEMENT_TIMEOUT_MS } from "./pg-pool.js";
import {
  UnrecordedOutcomeError,
  type AdmissionRecord,
  type CompletionRecord,
  type LedgerStore,
  type Mode,
  type PeriodUsage,
  type RefusalRecord,
  type UsageBreakdown,
} from "../store.js";

// A period "YYYY-MM" spans the days "YYYY-MM-01" to "YYYY-MM-31" as text; refusals are kept per day.
const REFUSALS_IN_PERIOD = "account_id = $1 AND mode = $2 AND day BETWEEN $3::text || '-01' AND $3::text || '-31'";

/**
 * Closes ledger rows and moves their aggregates by the counting rule, in one
 * statement. `$6` is 0 (counted) or -1 (given back) per row; `$7` the tokens a
 * counted row adds.
 *
 * A row settled by a survivor (its node missed its lease, e.g. stopped for a
 * while) carries `settled_by` and was given back; when its own node completes
 * it after all, the completion overwrites the settlement and adds the request
 * (and its tokens) again, so a request that was served is in the ledger. Only
 * unfinished rows, and settled ones by their owner, are closed, each exactly
 * once: the completion clears `settled_by`.
 *
 * A row its own completion closed as served, which the refusal of an
 * unrecorded success then closes (REFUSE_SERVED: the client was answered 503
 * though the success committed), takes its tokens back as well (`undone`);
 * every other statement closes only unfinished or settled rows, whose tokens
 * never counted.
 *
 * Locks are taken in one order everywhere, ledger rows, then counters (in key
 * order, as batched admissions take them), then days, as admission takes
 * counters then days: the day update waits for the counter
 * update (a one-time filter on its result), so two statements never hold each
 * other's rows. Returns one row per day and specialist, with how many ledger
 * rows it closed.
 */
const finishRows = (which: string, settledBy: string): string => `
  WITH prior AS (
    SELECT id, settled_by IS NOT NULL AS was_settled,
      CASE WHEN status IS NOT NULL AND settled_by IS NULL THEN prompt_tokens + completion_tokens ELSE 0 END AS undone
    FROM usage_events WHERE ${which} FOR UPDATE
  ), finished AS (
    UPDATE usage_events e SET status = $1, prompt_tokens = $2, completion_tokens = $3, latency_ms = $4, finished_at = $5, settled_by = ${settledBy}
    FROM prior WHERE e.id = prior.id
    RETURNING e.account_id, e.mode, e.period, substr(e.created_at, 1, 10) AS day, e.specialist, prior.was_settled, prior.undone
  ), per_day AS (
    SELECT account_id, mode, period, day, specialist, COUNT(*)::integer AS n, COUNT(*) FILTER (WHERE was_settled)::integer AS back,
      SUM(undone)::bigint AS undone
    FROM finished GROUP BY 1, 2, 3, 4, 5
  ), locked AS (
    SELECT 1 FROM usage_counters c JOIN (SELECT DISTINCT account_id, mode, period FROM per_day) p USING (account_id, mode, period)
    ORDER BY c.account_id, c.mode, c.period FOR UPDATE OF c
  ), counters AS (
    UPDATE usage_counters c SET requests = c.requests + $6::integer * p.n + p.back, tokens = c.tokens + $7::bigint * p.n - p.undone
    FROM (SELECT account_id, mode, period, SUM(n)::integer AS n, SUM(back)::integer AS back, SUM(undone)::bigint AS undone
          FROM per_day GROUP BY 1, 2, 3) p
    WHERE c.account_id = p.account_id AND c.mode = p.mode AND c.period = p.period AND (SELECT COUNT(*) FROM locked) >= 0
    RETURNING 1
  )
  UPDATE usage_daily d SET requests = d.requests + $6::integer * p.n + p.back, tokens = d.tokens + $7::bigint * p.n - p.undone
  FROM per_day p
  WHERE d.account_id = p.account_id AND d.mode = p.mode AND d.period = p.period AND d.day = p.day AND d.specialist = p.specialist
    AND (SELECT COUNT(*) FROM counters) >= 0
  RETURNING p.n`;

/**
 * The reads behind every usage report: aggregate rows only, bounded by days ×
 * specialists per account, mode and period, never the ledger.
 */
export const PG_USAGE_QUERIES = {
  counter: "SELECT requests, tokens FROM usage_counters WHERE account_id = $1 AND mode = $2 AND period = $3",
  bySpecialist: `SELECT specialist, SUM(requests) AS n FROM usage_daily WHERE account_id = $1 AND mode = $2 AND period = $3
                 GROUP BY specialist HAVING SUM(requests) > 0 ORDER BY n DESC, specialist`,
  daily: `SELECT day, SUM(requests) AS n FROM usage_daily WHERE account_id = $1 AND mode = $2 AND period = $3
          GROUP BY day HAVING SUM(requests) > 0 ORDER BY day`,
} as const;

/** What one completion or settlement writes on every row it closes. */
export interface RowOutcome {
  status: number;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number | null;
  at: string;
}

const outcomeParams = (o: RowOutcome): unknown[] => {
  const counts = countsAgainstQuota(o.status);
  return [o.status, o.promptTokens, o.completionTokens, o.latencyMs, o.at, counts ? 0 : -1, counts ? o.promptTokens + o.completionTokens : 0];
};

/** Closes one ledger row, by the node that admitted it: unfinished, or settled by a survivor meanwhile (a settled row was given back: it counts again). */
export const FINISH_ONE = finishRows("id = $8 AND (status IS NULL OR settled_by IS NOT NULL)", "NULL");
/**
 * Closes every unfinished row of nodes whose lease ran out, and rows of
 * writers never registered here (a copied SQLite ledger), marking them settled
 * by `$8` (the settling node).
 */
export const FINISH_ORPHANS = finishRows(
  "status IS NULL AND (node_id IS NULL OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = usage_events.node_id AND n.lease_until >= now()))",
  "$8",
);
export { outcomeParams };
/**
 * Closes, as refused (given back), the row of an admission this node stopped
 * waiting for: the statement may have committed after the client was refused.
 * Matched by request id, node and admission time, and only while unfinished.
 */
export const FINISH_UNCLAIMED = finishRows("request_id = $8 AND node_id = $9 AND created_at = $10 AND status IS NULL", "NULL");

/**
 * Closes, as the refusal its client got, a success whose completion could not
 * be confirmed: whether that completion committed (its answer lost) or not,
 * the row ends refused and given back, its tokens included.
 */
export const REFUSE_SERVED = finishRows("id = $8 AND (status IS NULL OR settled_by IS NOT NULL OR status BETWEEN 200 AND 299)", "NULL");

/** This node's unfinished rows admitted before `$2`: candidates for closing as forgotten. */
const OWN_UNFINISHED = "SELECT id FROM usage_events WHERE node_id = $1 AND status IS NULL AND created_at < $2";
/** Closes, as refused (given back), rows of this node that no request of it holds. */
export const FINISH_FORGOTTEN = finishRows("id = ANY($8::bigint[]) AND node_id = $9 AND status IS NULL", "NULL");
/**
 * How old an unfinished row of this node must be before a sweep may close it.
 * The sweep checks against the requests in flight, so this only keeps it to
 * rows no admission can still be answering for (a request's statements are
 * cut after 2 s).
 */
const FORGOTTEN_AFTER_MS = 30_000;

/** What waits to be written again: a completion, a success refused because it could not be recorded, or an admission whose outcome is unknown. */
type Unwritten = { completion: CompletionRecord } | { refused: CompletionRecord } | { unclaimed: AdmissionRecord };

/** The status a request gets when its record could not be written: what the ledger then says of it. */
const DEPENDENCY_UNAVAILABLE = 503;
/** A row closed as that refusal, given back: no tokens. */
const refusal = (at: string): RowOutcome => ({ status: DEPENDENCY_UNAVAILABLE, promptTokens: 0, completionTokens: 0, latencyMs: null, at });

/** PostgreSQL's deadlock_detected: the statement was rolled back whole, so running it again is safe. */
const DEADLOCK = "40P01";
const DEADLOCK_TRIES = 3;

/**
 * Every ledger statement locks rows in one order, so a deadlock should not
 * happen; should one still (a lock order PostgreSQL chose differently), the
 * victim's statement is rolled back and is run again rather than failing a request.
 */
async function retryOnDeadlock<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if ((error as { code?: string }).code !== DEADLOCK || attempt >= DEADLOCK_TRIES) throw error;
    }
  }
}

/**
 * The usage ledger in PostgreSQL, with the same aggregates as the SQLite file
 * (usage_counters for the quota, usage_daily for the reports, usage_refusals for
 * refused requests), written in the same statements as the ledger, so no report
 * scans the ledger for its totals.
 */
export class PgLedger implements LedgerStore {
  private readonly completions = new CompletionBatch((text, name, values) => retryOnDeadlock(() => requestQuery(this.requests, text, values, name)), {
    text: FINISH_ONE,
    params: (r) => [...outcomeParams(r), r.eventId],
  });
  private readonly admissions = new AdmissionBatch(
    async <R>(text: string, name: string, values: unknown[]) =>
      (await retryOnDeadlock(() => requestQuery<R & pg.QueryResultRow>(this.requests, text, values, name))).rows,
    () => this.nodeId(),
  );
  /** Completions the database could not take when they came (and unclaimed admissions), written again until it does. */
  readonly retries = new CompletionRetryQueue<Unwritten>(async (u) => {
    if ("unclaimed" in u) return this.closeUnclaimed(u.unclaimed);
    if ("refused" in u) await this.refuseServed(u.refused);
    else await this.write(u.completion);
    this.open.delete("refused" in u ? u.refused.eventId : u.completion.eventId);
  });
  /** Rows this node admitted whose outcome is not written yet: a sweep never closes them. */
  private readonly open = new Set<number>();
  /** Admissions whose statement has not answered yet. */
  private readonly admitting = new Set<Promise<number | undefined>>();

  constructor(
    private readonly pool: pg.Pool,
    /** The node id written on each ledger row; null for stores that never admit (CLI). */
    private readonly nodeId: () => string | null,
    /** Where the statements requests wait for run (a server's request pool). */
    private readonly requests: pg.Pool = pool,
  ) {}

  /** Batched with the admissions that arrive while another is being written (one statement and one commit for all). */
  async admit(r: AdmissionRecord): Promise<number | undefined> {
    const admitting = this.admissions.admit(r);
    this.admitting.add(admitting);
    try {
      const id = await admitting;
      if (id !== undefined) this.open.add(id);
      return id;
    } catch (error) {
      // Refused (503) without an answer: should the statement commit after all, its row is closed as refused,
      // once the server's own statement timeout has surely ended it.
      if (isUnansweredStatement(error)) setTimeout(() => this.retries.add({ unclaimed: r }), STATEMENT_TIMEOUT_MS + 1_000).unref();
      throw error;
    } finally {
      this.admitting.delete(admitting);
    }
  }

  /**
   * Records a request's outcome before its client is answered. A success the
   * database cannot take within the request's statement timeout is not
   * answered as one: it throws (the client gets 503 `dependency_unavailable`)
   * and is written later as that refusal, given back. Other outcomes the
   * client sees anyway are written later as they are. A statement the database
   * rejects, or a full retry queue, fails here.
   */
  async complete(r: CompletionRecord): Promise<void> {
    try {
      await this.write(r);
      this.open.delete(r.eventId);
    } catch (error) {
      const served = r.status >= 200 && r.status < 300;
      // The statement may have committed though its answer never came: the refusal then overwrites the success.
      // A refusal carries no tokens, as every outcome that does not count.
      const again = served ? { refused: { ...r, status: DEPENDENCY_UNAVAILABLE, promptTokens: 0, completionTokens: 0 } } : { completion: r };
      const transient = isTransientDatabaseError(error);
      const queued = transient && this.retries.add(again);
      // Not kept for later (a full queue, or a statement the database rejects): the row stays open, and this
      // node's sweep closes it as refused.
      if (!queued) this.open.delete(r.eventId);
      // A success the database was away for is refused to its client (503) even when the queue is full: it is then
      // given back everywhere. A rejected statement is a fault of ours, reported as one (500).
      if (served && transient) throw new UnrecordedOutcomeError(error);
      if (!queued) throw error;
    }
  }

  private async refuseServed(r: CompletionRecord): Promise<void> {
    await this.pool.query({ name: "alveare_refuse_served", text: REFUSE_SERVED, values: [...outcomeParams(r), r.eventId] });
  }

  /**
   * Closes, as refused and given back, this node's unfinished rows that none of
   * its requests holds: an admission that reached the database after the node
   * stopped waiting for it (a partition delaying the statement past the
   * unclaimed close), or a completion given up. Rows are read first; then every
   * admission that could have written one of them has answered before the
   * check against the open requests, so a row whose answer was on its way is
   * never taken. Returns how many rows it closed.
   */
  async closeForgotten(olderThanMs = FORGOTTEN_AFTER_MS): Promise<number> {
    const nodeId = this.nodeId();
    if (nodeId === null) return 0;
    const before = new Date(Date.now() - olderThanMs).toISOString();
    const { rows } = await this.pool.query<{ id: number }>({ name: "alveare_own_unfinished", text: OWN_UNFINISHED, values: [nodeId, before] });
    if (rows.length === 0) return 0;
    await Promise.allSettled([...this.admitting]);
    const forgotten = rows.map((row) => Number(row.id)).filter((id) => !this.open.has(id));
    if (forgotten.length === 0) return 0;
    const closed = await this.pool.query<{ n: number }>({
      name: "alveare_finish_forgotten",
      text: FINISH_FORGOTTEN,
      values: [...outcomeParams(refusal(new Date().toISOString())), forgotten, nodeId],
    });
    return closed.rows.reduce((sum, row) => sum + row.n, 0);
  }

  private async closeUnclaimed(r: AdmissionRecord): Promise<void> {
    await this.pool.query({
      name: "alveare_finish_unclaimed",
      text: FINISH_UNCLAIMED,
      values: [...outcomeParams(refusal(r.at)), r.requestId, this.nodeId(), r.at],
    });
  }

  /** Batched with the other completions of this event-loop turn (one statement for all). */
  private write(r: CompletionRecord): Promise<void> {
    return this.completions.add(r);
  }

  async countRefusal(r: RefusalRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO usage_refusals AS u (account_id, mode, day, key_id, code, status, requests) VALUES ($1, $2, $3, $4, $5, $6, 1)
       ON CONFLICT (account_id, mode, day, key_id, code) DO UPDATE SET requests = u.requests + 1`,
      [r.accountId, r.mode, r.at.slice(0, 10), r.keyId, r.code, r.status],
    );
  }

  async periodUsage(accountId: string, mode: Mode, period: string): Promise<PeriodUsage> {
    const params = [accountId, mode, period];
    const [counter, specialists] = await Promise.all([
      requestQuery<{ requests: number; tokens: number }>(this.requests, PG_USAGE_QUERIES.counter, params),
      requestQuery<{ specialist: string; n: number }>(this.requests, PG_USAGE_QUERIES.bySpecialist, params),
    ]);
    // fromEntries defines own properties, so a specialist id such as "__proto__" stays a plain key.
    const bySpecialist = Object.fromEntries(specialists.rows.map((row) => [row.specialist, row.n]));
    const row = counter.rows[0];
    return { requests: row?.requests ?? 0, tokens: row?.tokens ?? 0, bySpecialist };
  }

  async dailyRequests(accountId: string, mode: Mode, period: string): Promise<Record<string, number>> {
    const { rows } = await this.pool.query<{ day: string; n: number }>(PG_USAGE_QUERIES.daily, [accountId, mode, period]);
    return Object.fromEntries(rows.map((row) => [row.day, row.n]));
  }

  async usageBreakdown(accountId: string, mode: Mode, period: string): Promise<UsageBreakdown> {
    const params = [accountId, mode, period];
    const [byKey, admitted, refused, dailyTokens] = await Promise.all([
      // The requests by_status counts: outcomes a client was given (not delivered and unfinished rows are in neither).
      this.pool.query<{ key_id: string; requests: number; tokens: number }>(
        `SELECT key_id, SUM(requests) AS requests, SUM(tokens) AS tokens FROM (
           SELECT key_id, COUNT(*) AS requests, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
           WHERE account_id = $1 AND mode = $2 AND period = $3 AND status <> 0 GROUP BY key_id
           UNION ALL
           SELECT key_id, SUM(requests), 0 FROM usage_refusals WHERE ${REFUSALS_IN_PERIOD} GROUP BY key_id
         ) k GROUP BY key_id ORDER BY requests DESC, key_id`,
        params,
      ),
      this.pool.query<{ success: number; client_error: number; client_closed: number; rate_limited: number; server_error: number }>(
        // Not delivered (0) and unfinished (NULL) rows are no outcome the client saw: in no column. A client that
        // left (499) is its own: unlike the other 4xx it counts against the quota.
        `SELECT COUNT(*) FILTER (WHERE status >= 200 AND status < 400) AS success,
                COUNT(*) FILTER (WHERE status >= 400 AND status < 500 AND status NOT IN (429, ${CLIENT_CLOSED})) AS client_error,
                COUNT(*) FILTER (WHERE status = ${CLIENT_CLOSED}) AS client_closed,
                COUNT(*) FILTER (WHERE status = 429) AS rate_limited,
                COUNT(*) FILTER (WHERE status >= 500) AS server_error
         FROM usage_events WHERE account_id = $1 AND mode = $2 AND period = $3`,
        params,
      ),
      this.pool.query<{ client_error: number; rate_limited: number; server_error: number }>(
        `SELECT COALESCE(SUM(requests) FILTER (WHERE status >= 400 AND status < 500 AND status <> 429), 0) AS client_error,
                COALESCE(SUM(requests) FILTER (WHERE status = 429), 0) AS rate_limited,
                COALESCE(SUM(requests) FILTER (WHERE status >= 500), 0) AS server_error
         FROM usage_refusals WHERE ${REFUSALS_IN_PERIOD}`,
        params,
      ),
      this.pool.query<{ day: string; tokens: number }>(
        `SELECT substr(created_at, 1, 10) AS day, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage_events
         WHERE account_id = $1 AND mode = $2 AND period = $3 GROUP BY day ORDER BY day`,
        params,
      ),
    ]);
    const a = admitted.rows[0];
    const f = refused.rows[0];
    return {
      byKey: byKey.rows.map((r) => ({ keyId: r.key_id, requests: r.requests, tokens: r.tokens })),
      byStatus: {
        success: a?.success ?? 0,
        clientError: (a?.client_error ?? 0) + (f?.client_error ?? 0),
        clientClosed: a?.client_closed ?? 0,
        rateLimited: (a?.rate_limited ?? 0) + (f?.rate_limited ?? 0),
        serverError: (a?.server_error ?? 0) + (f?.server_error ?? 0),
      },
      dailyTokens: Object.fromEntries(dailyTokens.rows.map((row) => [row.day, row.tokens])),
    };
  }
}
