import type { AdmissionRecord } from "../store.js";
import { GroupWriter } from "../../group-writer.js";
import { isDatabaseConnectionFailure } from "./connection-failure.js";

/**
 * One admission in one statement, atomic and exact across nodes: the counter
 * row is incremented only while it is below the limit (a concurrent admission
 * on another node waits for the row lock and re-checks the new count), and the
 * day's aggregate and the ledger row are written only when it was. Nothing is
 * read first and written later.
 */
export const ADMIT_ONE = `
  WITH counted AS (
    INSERT INTO usage_counters AS c (account_id, mode, period, requests)
    SELECT $1, $2, $3, 1 WHERE $4::integer > 0
    ON CONFLICT (account_id, mode, period) DO UPDATE SET requests = c.requests + 1 WHERE c.requests < $4::integer
    RETURNING 1
  ), daily AS (
    INSERT INTO usage_daily AS d (account_id, mode, period, day, specialist, requests)
    SELECT $1, $2, $3, substr($5, 1, 10), $6, 1 FROM counted
    ON CONFLICT (account_id, mode, period, day, specialist) DO UPDATE SET requests = d.requests + 1
    RETURNING 1
  )
  INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, created_at, node_id)
  SELECT $7, $1, $8, $2, $3, $9, $6, $5, $10 FROM counted
  RETURNING id`;

/**
 * Many admissions in one statement, by the same rule: per account, mode and
 * period the whole group is counted when it fits under the limit (the row
 * lock re-checks it against the newest count, as for one), or none of it is.
 * A group that does not fit returns no rows; its admissions are then decided
 * one by one, so the limit is exact to the last request. Counter rows are
 * taken in key order (bytewise, as the tables' "C" columns sort, whatever the
 * database's default collation), the order every statement that moves
 * counters takes them in, so two batches never wait on each other's rows.
 */
const ADMIT_MANY = `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
      WITH ORDINALITY AS i(account_id, mode, period, lim, created_at, specialist, request_id, key_id, endpoint, ord)
  ), wanted AS (
    SELECT account_id, mode, period, MIN(lim) AS lim, COUNT(*)::integer AS n FROM input GROUP BY 1, 2, 3
  ), counted AS (
    INSERT INTO usage_counters AS c (account_id, mode, period, requests)
    SELECT account_id, mode, period, n FROM wanted WHERE n <= lim ORDER BY account_id COLLATE "C", mode COLLATE "C", period COLLATE "C"
    ON CONFLICT (account_id, mode, period) DO UPDATE SET requests = c.requests + EXCLUDED.requests
      WHERE c.requests + EXCLUDED.requests <= (SELECT w.lim FROM wanted w WHERE w.account_id = c.account_id AND w.mode = c.mode AND w.period = c.period)
    RETURNING account_id, mode, period
  ), admitted AS (
    SELECT i.* FROM input i JOIN counted USING (account_id, mode, period)
  ), daily AS (
    INSERT INTO usage_daily AS d (account_id, mode, period, day, specialist, requests)
    SELECT account_id, mode, period, substr(created_at, 1, 10), specialist, COUNT(*) FROM admitted GROUP BY 1, 2, 3, 4, 5
    ORDER BY account_id COLLATE "C", mode COLLATE "C", period COLLATE "C", substr(created_at, 1, 10) COLLATE "C", specialist COLLATE "C"
    ON CONFLICT (account_id, mode, period, day, specialist) DO UPDATE SET requests = d.requests + EXCLUDED.requests
  )
  INSERT INTO usage_events (request_id, account_id, key_id, mode, period, endpoint, specialist, created_at, node_id)
  SELECT request_id, account_id, key_id, mode, period, endpoint, specialist, created_at, $10 FROM admitted ORDER BY ord
  RETURNING id, request_id`;

type Run = <R>(text: string, name: string, values: unknown[]) => Promise<R[]>;

/**
 * The admissions that arrive while another admission statement runs, written
 * together in one statement and one commit: under load one account's
 * admissions no longer queue on its counter row one commit each.
 */
export class AdmissionBatch {
  private readonly writer = new GroupWriter<AdmissionRecord, number | undefined>((records) => this.write(records), isDatabaseConnectionFailure);

  constructor(
    /** Runs one statement (with whatever retry the ledger applies). */
    private readonly run: Run,
    /** The node id written on each ledger row; null for stores that never admit (CLI). */
    private readonly nodeId: () => string | null,
  ) {}

  /** The new ledger row's id, or undefined when the period's limit is reached. */
  admit(record: AdmissionRecord): Promise<number | undefined> {
    return this.writer.add(record);
  }

  private async one(r: AdmissionRecord): Promise<number | undefined> {
    const params = [r.accountId, r.mode, r.period, r.limit, r.at, r.specialist, r.requestId, r.keyId, r.endpoint, this.nodeId()];
    const rows = await this.run<{ id: number }>(ADMIT_ONE, "alveare_admit", params);
    return rows[0]?.id;
  }

  private async write(records: AdmissionRecord[]): Promise<Array<number | undefined | Promise<number | undefined>>> {
    if (records.length === 1) return [await this.one(records[0]!)];
    // Rows come back by request id; a repeated id (a client's own) is decided on its own after the batch.
    const seen = new Set<string>();
    const batch: AdmissionRecord[] = [];
    for (const r of records) if (!seen.has(r.requestId) && seen.add(r.requestId)) batch.push(r);
    const rows = await this.run<{ id: number; request_id: string }>(ADMIT_MANY, "alveare_admit_many", this.manyParams(batch));
    const ids = new Map(rows.map((row) => [row.request_id, row.id]));
    // Not in the batch's rows: a repeated id, or a group that did not fit whole. Those are decided
    // one at a time in arrival order, after the batch's own rows are answered and without holding
    // up the next batch; a failure there fails only its own request, never one already admitted.
    let alone: Promise<unknown> = Promise.resolve();
    return records.map((r) => {
      const id = ids.get(r.requestId);
      if (id !== undefined) {
        ids.delete(r.requestId);
        return id;
      }
      const decided = alone.then(() => this.one(r));
      alone = decided.catch(() => undefined);
      return decided;
    });
  }

  private manyParams(records: AdmissionRecord[]): unknown[] {
    const columns: unknown[][] = [[], [], [], [], [], [], [], [], []];
    for (const r of records) {
      [r.accountId, r.mode, r.period, r.limit, r.at, r.specialist, r.requestId, r.keyId, r.endpoint].forEach((v, i) => columns[i]!.push(v));
    }
    return [...columns, this.nodeId()];
  }
}
