import type { ApiKeyRecord, UsageBreakdown } from "../store/store.js";

/** A breakdown as the JSON APIs answer it, each key named as its owners named it. */
export function breakdownJson(breakdown: UsageBreakdown, keys: readonly ApiKeyRecord[]) {
  const byId = new Map(keys.map((k) => [k.id, k]));
  return {
    by_key: breakdown.byKey.map((row) => ({
      key_id: row.keyId,
      name: byId.get(row.keyId)?.name ?? null,
      prefix: byId.get(row.keyId)?.prefix ?? null,
      requests: row.requests,
      tokens: row.tokens,
    })),
    by_status: {
      success: breakdown.byStatus.success,
      client_error: breakdown.byStatus.clientError,
      client_closed: breakdown.byStatus.clientClosed,
      rate_limited: breakdown.byStatus.rateLimited,
      server_error: breakdown.byStatus.serverError,
    },
    daily_tokens: breakdown.dailyTokens,
  };
}
