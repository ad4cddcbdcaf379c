import { isoTime, periodKeyAt } from "../metering/billing-period.js";
import type { AccountStore, AdmissionRecord, CompletionRecord, KeyLookup, LedgerStore } from "../store/store.js";
import type { KeyCache, QuotaCounter, QuotaRequest, QuotaTicket } from "./backends.js";
import type { Outcome } from "./gate.js";

/**
 * The quota kept by the store itself: its `admit` counts the request and
 * writes the ledger row in one step (exact in one process: the SQLite store
 * holds the counters in memory), `complete` records the outcome and gives
 * back what does not count.
 */
export class StoreQuotaCounter implements QuotaCounter {
  constructor(
    private readonly store: Pick<LedgerStore, "admit" | "complete">,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async take(r: QuotaRequest): Promise<QuotaTicket | undefined> {
    const period = periodKeyAt(r.at);
    const admitted = admissionRecord(r, period);
    const eventId = await this.store.admit(admitted);
    if (eventId === undefined) return undefined;
    return { finish: (outcome: Outcome) => this.store.complete(completionRecord(r, period, eventId, outcome, this.now(), admitted)) };
  }
}

/**
 * Key lookups through the store. The SQLite store caches verified keys itself
 * and drops them whenever its file changes (this process or the CLI), so
 * there is nothing more to invalidate here; a shared cache would drop its
 * copies on the broadcast that calls `invalidate`.
 */
export class StoreKeyCache implements KeyCache {
  constructor(private readonly store: Pick<AccountStore, "findKeyByHash">) {}

  find(hash: string): Promise<KeyLookup | undefined> {
    return this.store.findKeyByHash(hash);
  }

  async invalidate(): Promise<void> {
    // The store's own cache is invalidated by the write itself.
  }
}

/** The ledger's record of a request the quota counted in `period`. */
export function admissionRecord(r: QuotaRequest, period: string): AdmissionRecord {
  const { accountId, keyId, mode } = r.caller;
  return {
    requestId: r.requestId,
    accountId,
    keyId,
    mode,
    period,
    endpoint: r.endpoint,
    specialist: r.specialistId,
    limit: r.limit,
    at: isoTime(r.at),
  };
}

/** The ledger's record of how the request admitted as `eventId` (with `admitted`, when at hand) ended. */
export function completionRecord(
  r: QuotaRequest,
  period: string,
  eventId: number,
  outcome: Outcome,
  at: Date,
  admitted?: AdmissionRecord,
): CompletionRecord {
  const { accountId, mode } = r.caller;
  const { status, promptTokens, completionTokens, latencyMs } = outcome;
  const record: CompletionRecord = { eventId, accountId, mode, period, status, promptTokens, completionTokens, latencyMs, at: isoTime(at) };
  if (admitted !== undefined) {
    record.day = admitted.at.slice(0, 10);
    record.specialist = admitted.specialist;
  }
  return record;
}
