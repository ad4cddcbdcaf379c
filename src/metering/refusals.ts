import { ApiError } from "../errors.js";
import type { RefusalRecord } from "../store/store.js";

/** Who was refused: an authenticated caller's account, key and mode. */
interface RefusedCaller {
  accountId: string;
  keyId: string;
  mode: RefusalRecord["mode"];
}

/**
 * The refusal record for an admission error the dashboard counts: every 429 (a
 * minute limit, a monthly quota, or any limit added later) and a specialist
 * outside the plan. Anything else (a bug, a missing key) is not a refusal of an
 * account's request, so it is left out.
 */
export function refusalOf(caller: RefusedCaller, error: unknown, at: Date): RefusalRecord | undefined {
  if (!(error instanceof ApiError)) return undefined;
  if (error.status !== 429 && error.code !== "specialist_not_in_plan") return undefined;
  return { accountId: caller.accountId, keyId: caller.keyId, mode: caller.mode, status: error.status, code: error.code, at: at.toISOString() };
}
