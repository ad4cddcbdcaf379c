import type { FastifyInstance } from "fastify";
import type { Usage } from "../../api/types.js";
import { errors } from "../../errors.js";
import type { AccountGate } from "../../gate/account-gate.js";
import { usageReport } from "../../metering/usage-report.js";
import type { LedgerStore } from "../../store/store.js";

/** GET /v1/usage: the caller's account and mode, this UTC month. Needs a key, consumes no limit. */
export function usageRoute(ledger: LedgerStore, gate: AccountGate) {
  return async (v1: FastifyInstance): Promise<void> => {
    v1.get("/usage", async (request): Promise<Usage> => {
      const caller = request.caller;
      if (caller === undefined) throw errors.missingApiKey();
      return usageReport(ledger, gate.planOf(caller), caller.accountId, caller.mode);
    });
  };
}
