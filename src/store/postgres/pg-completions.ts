import { countsAgainstQuota } from "../../metering/counting-rule.js";
import type { CompletionRecord } from "../store.js";

/** Rows closed in one statement at most: a longer turn's completions go out in several. */
const MAX_BATCH = 500;

/**
 * Closes many ledger rows, each with its own outcome, in one statement: the
 * same steps as closing one (only rows still unfinished, or settled by a
 * survivor and now completed by their own node, which count again; none is
 * counted twice; ledger rows, then counters, then days), with each row's change to
 * the aggregates summed per counter and per day first.
 */
const FINISH_MANY = `
  WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::double precision[], $6::text[], $7::integer[], $8::bigint[])
      AS i(id, status, prompt_tokens, completion_tokens, latency_ms, finished_at, requests, tokens)
  ), prior AS (
    SELECT e.id, e.status IS NOT NULL AS was_settled FROM usage_events e JOIN input i ON e.id = i.id
    WHERE e.status IS NULL OR e.settled_by IS NOT NULL FOR UPDATE OF e
  ), finished AS (
    UPDATE usage_events e SET status = i.status, prompt_tokens = i.prompt_tokens, completion_tokens = i.completion_tokens,
      latency_ms = i.latency_ms, finished_at = i.finished_at, settled_by = NULL
    FROM input i, prior p WHERE e.id = i.id AND p.id = e.id
    RETURNING e.account_id, e.mode, e.period, substr(e.created_at, 1, 10) AS day, e.specialist,
      i.requests + (CASE WHEN p.was_settled THEN 1 ELSE 0 END) AS requests, i.tokens
  ), per_day AS (
    SELECT account_id, mode, period, day, specialist, SUM(requests)::integer AS requests, SUM(tokens)::bigint AS tokens
    FROM finished GROUP BY 1, 2, 3, 4, 5
  ), counters AS (
    UPDATE usage_counters c SET requests = c.requests + p.requests, tokens = c.tokens + p.tokens
    FROM (SELECT account_id, mode, period, SUM(requests)::integer AS requests, SUM(tokens)::bigint AS tokens FROM per_day GROUP BY 1, 2, 3) p
    WHERE c.account_id = p.account_id AND c.mode = p.mode AND c.period = p.period
    RETURNING 1
  )
  UPDATE usage_daily d SET requests = d.requests + p.requests, tokens = d.tokens + p.tokens
  FROM per_day p
  WHERE d.account_id = p.account_id AND d.mode = p.mode AND d.period = p.period AND d.day = p.day AND d.specialist = p.specialist
    AND (SELECT COUNT(*) FROM counters) >= 0
  RETURNING 1`;

interface Waiting {
  record: CompletionRecord;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The completions of one event-loop turn, written together: under load many
 * requests end in the same turn, and one statement for all of them takes the
 * account's counter row once instead of once each. Each caller's promise
 * settles with its statement, so a failure reaches every completion it carried.
 */
export class CompletionBatch {
  private waiting: Waiting[] = [];

  constructor(
    /** Runs one statement (with whatever retry the ledger applies). */
    private readonly run: (text: string, name: string, values: unknown[]) => Promise<unknown>,
    /** The one-row statement and its parameters, used when a turn has a single completion. */
    private readonly one: { text: string; params: (r: CompletionRecord) => unknown[] },
  ) {}

  add(record: CompletionRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      // After the I/O callbacks of this turn, so every request that ends in it joins.
      if (this.waiting.length === 0) setImmediate(() => this.flush());
      this.waiting.push({ record, resolve, reject });
    });
  }

  private flush(): void {
    const all = this.waiting;
    this.waiting = [];
    for (let i = 0; i < all.length; i += MAX_BATCH) void this.write(all.slice(i, i + MAX_BATCH));
  }

  private async write(batch: Waiting[]): Promise<void> {
    try {
      if (batch.length === 1) await this.run(this.one.text, "alveare_finish_one", this.one.params(batch[0]!.record));
      else await this.run(FINISH_MANY, "alveare_finish_many", manyParams(batch.map((w) => w.record)));
      for (const w of batch) w.resolve();
    } catch (error) {
      for (const w of batch) w.reject(error);
    }
  }
}

function manyParams(records: CompletionRecord[]): unknown[] {
  const columns: unknown[][] = [[], [], [], [], [], [], [], []];
  for (const r of records) {
    const counts = countsAgainstQuota(r.status);
    const values = [
      r.eventId,
      r.status,
      r.promptTokens,
      r.completionTokens,
      r.latencyMs,
      r.at,
      counts ? 0 : -1,
      counts ? r.promptTokens + r.completionTokens : 0,
    ];
    values.forEach((v, i) => columns[i]!.push(v));
  }
  return columns;
}
