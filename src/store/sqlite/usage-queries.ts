/**
 * The reads behind every usage report (`GET /v1/usage`, the admin API, the
 * dashboard, the CLI): they touch only the aggregate tables, whose rows per
 * account, mode and period are bounded by days × specialists, never the ledger.
 */
export const USAGE_QUERIES = {
  counter: "SELECT requests, tokens FROM usage_counters WHERE account_id = ? AND mode = ? AND period = ?",
  bySpecialist: `SELECT specialist, SUM(requests) AS n FROM usage_daily WHERE account_id = ? AND mode = ? AND period = ?
                 GROUP BY specialist HAVING n > 0 ORDER BY n DESC, specialist`,
  daily: `SELECT day, SUM(requests) AS n FROM usage_daily WHERE account_id = ? AND mode = ? AND period = ?
          GROUP BY day HAVING n > 0 ORDER BY day`,
} as const;
