import { ApiError, errors } from "../errors.js";
import { AccountError } from "../gate/accounts.js";

/** An AccountService refusal as a catalogue 4xx (404 for a missing account or key, 400 otherwise); anything else passes through. */
export function accountError(error: unknown): never {
  if (error instanceof AccountError) {
    if (error.notFound) throw new ApiError(404, "invalid_request_error", "not_found", error.message);
    throw errors.invalidParameter("body", error.message);
  }
  throw error;
}
