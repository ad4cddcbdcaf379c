import { countsAgainstQuota } from "../../metering/counting-rule.js";
import type { CompletionRecord } from "../store.js";
import { GroupWriter } from "../../group-writer.js";
import { isDatabaseConnectionFailure } from "./connection-failure.js";

/**
 * Closes many ledger rows, each with its own outcome, in one statement: the
 * same steps as closing one (only rows still unfinished, or settled by a
 * survivor and now completed by their own node, which count again; none is
 * counted twice; ledger rows, then counters, then days), with each row's change to
 * the aggregates summed per counter and per day first. The counters are locked
 * in key order first, the order batched admissions take them in, so a batch of
 * completions and one of admissions over the same accounts never deadlock.
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
  ), locked AS (
    SELECT 1 FROM usage_counters c JOIN (SELECT DISTINCT account_id, mode, period FROM per_day) p USING (account_id, mode, period)
    ORDER BY c.account_id, c.mode, c.period FOR UPDATE OF c
  ), counters AS (
    UPDATE usage_counters c SET requests = c.requests + p.requests, tokens = c.tokens + p.tokens
    FROM (SELECT account_id, mode, period, SUM(requests)::integer AS requests, SUM(tokens)::bigint AS tokens FROM per_day GROUP BY 1, 2, 3) p
    WHERE c.account_id = p.account_id AND c.mode = p.mode AND c.period = p.period AND (SELECT COUNT(*) FROM locked) >= 0
    RETURNING 1
  )
  UPDATE usage_daily d SET requests = d.requests + p.requests, tokens = d.tokens + p.tokens
  FROM per_day p
  WHERE d.account_id = p.account_id AND d.mode = p.mode AND d.period = p.period AND d.day = p.day AND d.specialist = p.specialist
    AND (SELECT COUNT(*) FROM counters) >= 0
  RETURNING 1`;

/**
 * The completions that end while another completion statement runs, written
 * together: under load many requests end at once, and one statement for all of
 * them takes the account's counter row once instead of once each. Each caller's
 * promise settles with its statement, so a failure reaches every completion it carried.
 */
export class CompletionBatch {
  private readonly writer: GroupWriter<CompletionRecord, void>;

  constructor(
    /** Runs one statement (with whatever retry the ledger applies). */
    run: (text: string, name: string, values: unknown[]) => Promise<unknown>,
    /** The one-row statement and its parameters, used when a batch has a single completion. */
    one: { text: string; params: (r: CompletionRecord) => unknown[] },
  ) {
    this.writer = new GroupWriter<CompletionRecord, void>(async (records) => {
      if (records.length === 1) await run(one.text, "alveare_finish_one", one.params(records[0]!));
      else await run(FINISH_MANY, "alveare_finish_many", manyParams(records));
      return records.map(() => undefined);
    }, isDatabaseConnectionFailure);
  }

  add(record: CompletionRecord): Promise<void> {
    return this.writer.add(record);
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
