/**
 * The error catalogue: every failure any layer reports is an ApiError
 * built from one of these constructors, so status, type and code stay consistent.
 */
import { closest, slipEdits } from "./closest-name.js";

export type ErrorType = "invalid_request_error" | "authentication_error" | "permission_error" | "rate_limit_error" | "server_error";

export interface ErrorBody {
  error: { message: string; type: ErrorType; code: string; param: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    /** Extra response headers (Retry-After and friends). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** Whose key was refused, by ids, when the key itself was found (revoked, its account suspended or on a plan gone): for the log line. */
  refusedCaller: { accountId: string; keyId: string } | undefined;

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** A remote engine's failure (`upstream_error`), naming the upstream it came from for the operator's log line. */
export class UpstreamError extends ApiError {
  /** Which upstream failed: in a pool, only this says which one (the client is never told). */
  upstream: { url: string; model: string } | undefined;
}

/** What a running answer the drain's deadline ended is answered, logged and metered as (503 `overloaded`). */
export const SHUTDOWN_CUT_STATUS = 503;

export type Dependency = "redis" | "database";
/**
 * Where the store was found out of reach: admitting a request (the API's routes), recording the outcome of
 * one already served (its answer is then refused), before saving a change the other nodes must hear of (so
 * nothing was saved), after saving one (saved, but they were not told), or anywhere else (the dashboard, the admin API).
 */
export type DependencyStage = "admission" | "outcome" | "change" | "announcement" | "other";

const dependencyMessage = (dependency: Dependency, stage: DependencyStage): string => {
  const store = dependency === "redis" ? "rate-limit store" : "database";
  if (stage === "outcome")
    return `The server could not record this request's outcome (its ${store} is out of reach right now), so the answer is not delivered. Retry shortly.`;
  if (stage === "change")
    return `The server cannot reach its ${store} right now, so it could not tell the other nodes of this change: nothing was changed. Retry shortly.`;
  if (stage === "announcement")
    return `The change was saved, but the server could not tell the other nodes of it (its ${store} is out of reach right now): they follow it within a minute. Making the same change again once the store answers tells them at once.`;
  return `The server cannot reach its ${store} right now${stage === "admission" ? ", so it admits nothing" : ""}. Retry shortly.`;
};

/** 503 `dependency_unavailable`, naming the shared store that was out of reach (for metrics and logs). */
export class DependencyUnavailableError extends ApiError {
  constructor(
    readonly dependency: Dependency,
    stage: DependencyStage = "admission",
  ) {
    super(503, "server_error", "dependency_unavailable", dependencyMessage(dependency, stage), null, {
      "retry-after": String(DEPENDENCY_RETRY_SECONDS),
    });
  }
}

/** The 404 hint for a path sent with a trailing slash: `path` is the one meant, without it. */
export const withoutTrailingSlashHint = (path: string): string => `did you mean ${path}? (without the trailing slash)`;

/** `text` at most `length` UTF-16 units and an ellipsis, never cut inside a surrogate pair. */
export const shortenedTo = (text: string, length: number): string => {
  if (text.length <= length) return text;
  const end = /[\uD800-\uDBFF]/.test(text[length - 1]!) ? length - 1 : length;
  return `${text.slice(0, end)}…`;
};

/** A caller's value as far as an error message echoes it: 40 characters (a megabyte of it helps nobody). */
export const shortened = (value: string): string => shortenedTo(value, 40);

/** Retry-After in whole seconds, never shorter than the wait, and the exact wait in ms. */
const retryAfterHeaders = (retryAfterMs: number): Record<string, string> => ({
  "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
  "retry-after-ms": String(Math.ceil(retryAfterMs)),
});

/** What a client is told to wait when Redis or PostgreSQL is unreachable: a reconnect takes about that long. */
const DEPENDENCY_RETRY_SECONDS = 2;

const invalid = (code: string, message: string, param: string | null = null): ApiError =>
  new ApiError(400, "invalid_request_error", code, message, param);

/** A 408 for what did not arrive within its limit ("The request was", "The request's headers were"). */
const notReceivedInTime = (subject: string, timeoutMs: number): ApiError =>
  new ApiError(
    408,
    "invalid_request_error",
    "request_timeout",
    `${subject} not received in full within ${timeoutMs} ms. Send the headers and the body without pausing.`,
  );

export const errors = {
  invalidJson: (detail: string) => invalid("invalid_json", `We could not parse the JSON body of your request: ${detail}`),
  missingParameter: (param: string) => invalid("missing_parameter", `Missing required parameter: '${param}'.`, param),
  /** A change that names none of the fields it can change: the first one is the parameter. */
  missingOneOf: (params: string[]) =>
    invalid("missing_parameter", `Missing required parameter: send at least one of ${params.map((p) => `'${p}'`).join(", ")}.`, params[0]),
  // Bounded: a problem can quote the request's own names and paths, which are the caller's to make long.
  invalidParameter: (param: string, message: string) => invalid("invalid_parameter", `Invalid '${param}': ${shortenedTo(message, 600)}`, param),
  modelNotFound: (name: string, param: string, suggestion?: string) => {
    // OpenAI-style routes name a model (`alveare-<specialist>`), /v1/infer a specialist: the message uses the caller's word.
    const [word, list] =
      param === "model" ? ["model", "the models you can use"] : ["specialist", "the specialists you can use, as alveare-<specialist>"];
    const hint = suggestion === undefined ? "." : `; did you mean '${suggestion}'?`;
    return invalid("model_not_found", `The ${word} '${shortened(name)}' does not exist${hint} GET /v1/models lists ${list}.`, param);
  },
  contextLengthExceeded: (promptTokens: number | `at least ${number}`, contextSize: number, param: string, answer = "an answer") =>
    invalid(
      "context_length_exceeded",
      `This specialist's context holds ${contextSize} tokens and your prompt takes ${promptTokens}, leaving no room for ${answer}. Shorten the prompt.`,
      param,
    ),
  /** GET /v1/models/{model} for a model the list would not show: unknown, or not in the caller's plan. */
  unknownModel: (name: string) =>
    new ApiError(
      404,
      "invalid_request_error",
      "model_not_found",
      `The model '${shortened(name)}' does not exist or is not in your plan. GET /v1/models lists the models you can use.`,
      "model",
    ),
  /** `hint`: what to send instead, where the server can tell (another method, another route). */
  notFound: (method: string, url: string, hint?: string) =>
    new ApiError(
      404,
      "invalid_request_error",
      "not_found",
      `Unknown route: ${shortened(method)} ${shortened(url)}` + (hint === undefined ? "" : `; ${hint}.`),
    ),
  requestTooLarge: (limit: number) =>
    new ApiError(413, "invalid_request_error", "request_too_large", `Request body is larger than the limit of ${limit} bytes.`),
  missingApiKey: () =>
    new ApiError(401, "authentication_error", "missing_api_key", "No API key provided. Send it as 'Authorization: Bearer alv_live_…'."),
  malformedApiKey: (hint?: string) =>
    new ApiError(
      401,
      "authentication_error",
      "invalid_api_key",
      "Malformed API key: expected 'Authorization: Bearer alv_live_…' or 'alv_test_…'." + (hint === undefined ? "" : ` ${hint}`),
    ),
  invalidApiKey: () => new ApiError(401, "authentication_error", "invalid_api_key", "Invalid API key provided."),
  revokedApiKey: () => new ApiError(401, "authentication_error", "revoked_api_key", "This API key has been revoked."),
  invalidAdminToken: () => new ApiError(401, "authentication_error", "invalid_admin_token", "Invalid admin token."),
  /** The same code as a wrong admin token (clients need no new case); `prefix` alone is echoed, never the key. */
  apiKeyForAdminToken: (prefix: string) =>
    new ApiError(
      401,
      "authentication_error",
      "invalid_admin_token",
      `An API key (${prefix}…) was sent where the operator's admin token (ALVEARE_ADMIN_TOKEN) is needed. API keys work on /v1 only; send the admin token here.`,
    ),
  tooManySignIns: (retryAfterMs: number) => {
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    const wait = seconds < 60 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`;
    return new ApiError(429, "rate_limit_error", "too_many_sign_in_attempts", `Too many failed sign-ins. Try again in ${wait}.`, null, {
      "retry-after": String(seconds),
    });
  },
  accountSuspended: () =>
    new ApiError(403, "permission_error", "account_suspended", "The account of this API key is suspended. Contact the operator."),
  // The other plans are not named: an operator's per-customer plans are no other customer's business.
  notInPlan: (specialist: string, plan: string) =>
    new ApiError(403, "permission_error", "specialist_not_in_plan", `Your plan (${plan}) does not include the specialist '${specialist}'.`),
  /** The account's plan is not in this server's config (removed from the file since): it includes nothing here. */
  planNotServed: (plan: string) =>
    new ApiError(
      403,
      "permission_error",
      "specialist_not_in_plan",
      `The account's plan '${plan}' is not one this server serves, so it includes no specialist; the operator must move the account to one of the server's plans.`,
    ),
  rateLimited: (limit: number, windowMs: number, retryAfterMs: number) =>
    new ApiError(
      429,
      "rate_limit_error",
      "rate_limit_exceeded",
      `Rate limit reached: ${limit} requests per ${windowMs / 1000} seconds for this API key. Retry after ${Math.ceil(retryAfterMs)} ms.`,
      null,
      retryAfterHeaders(retryAfterMs),
    ),
  quotaExceeded: (limit: number, secondsToPeriodEnd: number) =>
    new ApiError(
      429,
      "rate_limit_error",
      "monthly_quota_exceeded",
      `Monthly quota reached: ${limit} requests this month for this account. It resets at the start of next month (UTC).`,
      null,
      {
        "retry-after": String(Math.max(1, secondsToPeriodEnd)),
        "x-should-retry": "false",
      },
    ),
  internal: () => new ApiError(500, "server_error", "internal_error", "The server had an error while processing your request. Retry with backoff."),
  overloaded: (retryAfterSeconds: number, message = "The engine is at capacity and its queue is full. Retry shortly.") =>
    new ApiError(503, "server_error", "overloaded", message, null, { "retry-after": String(retryAfterSeconds) }),
  upstream: (status: 502 | 503 | 504, message: string, headers: Readonly<Record<string, string>> = {}) =>
    new UpstreamError(status, "server_error", "upstream_error", message, null, headers),
  dailyKeyLimitReached: (limit: number, mode: string) =>
    new ApiError(
      403,
      "permission_error",
      "key_limit_reached",
      `This account's members created ${limit} ${mode} API keys in the last 24 hours, the most its plan allows a day. Try again later, or ask the operator.`,
    ),
  keyLimitReached: (limit: number, mode: string) =>
    new ApiError(
      403,
      "permission_error",
      "key_limit_reached",
      `This account already has ${limit} unrevoked ${mode} API keys, its plan's limit. Revoke one before creating another.`,
    ),
  /** A dashboard request without a session, or whose member is gone. */
  notSignedIn: () => new ApiError(401, "authentication_error", "not_signed_in", "Sign in first."),
  keyCreationSuspended: () =>
    new ApiError(403, "permission_error", "account_suspended", "This account is suspended: it cannot create API keys until it is reactivated."),
  unknownPlan: (plan: string, known: readonly string[]) => {
    // Case and small slips: "Starter" or "profesional" name the plan meant; "gold" names none.
    const byLowerCase = new Map(known.map((k) => [k.toLowerCase(), k]));
    // A shortening ("pro" for "professional") names the one plan it begins, when only one does.
    const begun = plan.length >= 2 ? [...byLowerCase.keys()].filter((k) => k.startsWith(plan.toLowerCase())) : [];
    const meant = byLowerCase.get(closest(plan.toLowerCase(), byLowerCase.keys(), slipEdits(plan)) ?? (begun.length === 1 ? begun[0]! : ""));
    const hint = meant === undefined ? "" : ` Did you mean '${meant}'?`;
    return invalid("invalid_parameter", `Invalid 'plan': there is no plan '${shortened(plan)}'.${hint} Plans: ${known.join(", ")}.`, "plan");
  },
  notFoundResource: (message: string) => new ApiError(404, "invalid_request_error", "not_found", message),
  /** One answer for every link that cannot be accepted: it tells nothing of whether it ever was an invitation. */
  invitationNotFound: () =>
    new ApiError(
      404,
      "invalid_request_error",
      "invitation_not_found",
      "This invitation link can no longer be used (it is unknown, already used, expired or replaced by a newer one); ask for a new one.",
    ),
  requestTimeout: (timeoutMs: number) => notReceivedInTime("The request was", timeoutMs),
  headersTimeout: (timeoutMs: number) => notReceivedInTime("The request's headers were", timeoutMs),
  headersTooLarge: () =>
    new ApiError(431, "invalid_request_error", "request_header_fields_too_large", "The request's headers are larger than the server accepts."),
  invalidRequest: (message: string) => new ApiError(400, "invalid_request_error", "invalid_request", message),
  embeddingInputTooLong: (index: number, count: number, tokens: number | `at least ${number}`, contextSize: number) =>
    invalid(
      "context_length_exceeded",
      `This embeddings specialist's context holds ${contextSize} tokens, but ${count === 1 ? "your input" : `input[${index}]`} is ${tokens} tokens. Shorten it or split it.`,
      "input",
    ),
  /**
   * `asked`: the tokens this request holds while it runs (its prompt and max_tokens), `left`: what the window has now.
   * Said both: a window with tokens left refused a request for more than they are, which read as a limit already spent.
   */
  tokenRateLimited: (limit: number, windowMs: number, retryAfterMs: number, asked?: { reserved: number; left: number; generates: boolean }) =>
    new ApiError(
      429,
      "rate_limit_error",
      "token_rate_limit_exceeded",
      `Token rate limit reached: ${limit} tokens per ${windowMs / 1000} seconds for this API key` +
        (asked === undefined
          ? ". "
          : `, ${Math.max(0, asked.left)} left now, and this request holds up to ${asked.reserved} while it runs (${asked.generates ? "its prompt and max_tokens" : "its inputs"}). `) +
        `Retry after ${Math.ceil(retryAfterMs)} ms${asked?.generates === true ? ", or ask for fewer max_tokens" : ""}.`,
      null,
      retryAfterHeaders(retryAfterMs),
    ),
  concurrencyLimited: (limit: number, retryAfterMs: number) =>
    new ApiError(
      429,
      "rate_limit_error",
      "concurrency_limit_exceeded",
      `Concurrency limit reached: ${limit} ${limit === 1 ? "request" : "requests"} at once for this API key. Retry when ${limit === 1 ? "it" : "one of them"} has finished.`,
      null,
      retryAfterHeaders(retryAfterMs),
    ),
  /** A reservation no window could ever hold: retrying would never help, so not a 429. */
  reservationTooLarge: (reservation: { promptTokens: number; completionTokens: number }, limit: number, windowMs: number) => {
    const reserved = reservation.promptTokens + reservation.completionTokens;
    const cap = `more than this API key's limit of ${limit} tokens per ${windowMs / 1000} seconds.`;
    // Nothing generated (embeddings): the inputs alone are too long, and the request has no max_tokens to lower.
    if (reservation.completionTokens === 0) {
      return invalid(
        "invalid_parameter",
        `Invalid 'input': these inputs may use up to ${reserved} tokens, ${cap} Send fewer or shorter inputs.`,
        "input",
      );
    }
    // The prompt leaves no room for even one generated token: lowering max_tokens cannot help.
    if (reservation.promptTokens >= limit) {
      return invalid(
        "invalid_parameter",
        `Invalid 'messages': the prompt may use up to ${reservation.promptTokens} tokens by itself (its messages, and tools if any), ` +
          `${cap} Shorten it.`,
        "messages",
      );
    }
    return invalid(
      "invalid_parameter",
      `Invalid 'max_tokens': this request may use up to ${reserved} tokens (max_tokens × n plus up to ${reservation.promptTokens} for the prompt), ` +
        `${cap} Lower max_tokens or n, or shorten the prompt.`,
      "max_tokens",
    );
  },
  /**
   * A dependency of the shared mode (Redis, PostgreSQL) did not answer: nothing
   * was admitted or counted, and the node recovers by itself when it returns.
   */
  dependencyUnavailable: (dependency: Dependency, cause?: unknown, stage?: DependencyStage) => {
    const error = new DependencyUnavailableError(dependency, stage);
    if (cause !== undefined) error.cause = cause;
    return error;
  },
  /** Same code as a full queue: clients retry either the same way, on this node later or on another. */
  notServing: (reason: "starting" | "shutting_down", retryAfterSeconds: number) =>
    new ApiError(
      503,
      "server_error",
      "overloaded",
      reason === "starting"
        ? "The server is still loading its models. Retry shortly."
        : "This server is shutting down and takes no new requests. Retry on another node.",
      null,
      { "retry-after": String(retryAfterSeconds) },
    ),
  /** A running answer the drain's deadline ended: the client retries elsewhere, as for a refusal while draining. */
  cutByShutdown: () =>
    new ApiError(
      SHUTDOWN_CUT_STATUS,
      "server_error",
      "overloaded",
      "This server shut down before the answer was complete. Retry on another node.",
      null,
      {
        "retry-after": "1",
      },
    ),
} as const;
