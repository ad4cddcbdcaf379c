/** One error class per status, carrying the server's error fields and the request id. */
import { serverDelayMs } from "./retry.js";

export interface ErrorFields {
  type?: string | undefined;
  code?: string | undefined;
  param?: string | null | undefined;
  message?: string | undefined;
}

export class AlveareError extends Error {
  override name = "AlveareError";
}

export class APIError extends AlveareError {
  override name = "APIError";
  readonly type: string | undefined;
  readonly code: string | undefined;
  readonly param: string | null;

  constructor(
    readonly status: number | undefined,
    fields: ErrorFields,
    readonly requestId: string | null,
    readonly headers: Headers | undefined,
    message?: string,
  ) {
    super(message ?? fields.message ?? `HTTP ${status ?? "error"}`);
    this.type = fields.type;
    this.code = fields.code;
    this.param = fields.param ?? null;
  }

  /** The error class for a response's status. */
  static fromResponse(status: number, body: unknown, headers: Headers): APIError {
    const error: unknown = typeof body === "object" && body !== null && "error" in body ? (body as { error: unknown }).error : undefined;
    // A bare string (TGI's {"error": "…"}, some proxies') is the message, as in a stream's error event.
    const fields: ErrorFields =
      typeof error === "string" ? { message: error } : typeof error === "object" && error !== null ? (error as ErrorFields) : {};
    const requestId = headers.get("x-request-id");
    const Class =
      status === 400
        ? BadRequestError
        : status === 401
          ? AuthenticationError
          : status === 403
            ? PermissionDeniedError
            : status === 404
              ? NotFoundError
              : status === 409
                ? ConflictError
                : status === 413
                  ? RequestTooLargeError
                  : status === 422
                    ? UnprocessableEntityError
                    : status === 429
                      ? RateLimitError
                      : status >= 500
                        ? InternalServerError
                        : APIError;
    return new Class(status, fields, requestId, headers);
  }

  /**
   * The error an error event inside a stream carries. The stream's status was 200, so the status is
   * the one the server's error catalogue gives the event's code (`streamErrorStatus`).
   */
  static fromStreamEvent(event: unknown, headers: Headers): APIError {
    const fields = (typeof event === "object" && event !== null && "error" in event ? (event as { error: ErrorFields }).error : {}) ?? {};
    return APIError.fromResponse(streamErrorStatus(fields), event, headers);
  }
}

/** The statuses of the error catalogue's codes that can end a stream (an upstream_error may also be 503 or 504). */
const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  rate_limit_exceeded: 429,
  token_rate_limit_exceeded: 429,
  concurrency_limit_exceeded: 429,
  monthly_quota_exceeded: 429,
  internal_error: 500,
  upstream_error: 502,
  overloaded: 503,
  dependency_unavailable: 503,
};
const STATUS_OF_TYPE: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  rate_limit_error: 429,
  server_error: 500,
};

/**
 * The status an error event's error would have had as a response: by its code (overloaded and
 * dependency_unavailable 503, the rate limits 429, upstream_error 502, internal_error 500), else by its
 * type (invalid_request_error 400, authentication_error 401, permission_error 403, rate_limit_error
 * 429), else 500.
 */
export function streamErrorStatus(fields: ErrorFields): number {
  const own = (table: Readonly<Record<string, number>>, key: string | undefined): number | undefined =>
    key !== undefined && Object.hasOwn(table, key) ? table[key] : undefined;
  return own(STATUS_OF_CODE, fields.code) ?? own(STATUS_OF_TYPE, fields.type) ?? 500;
}

export class BadRequestError extends APIError {
  override name = "BadRequestError";
}
export class AuthenticationError extends APIError {
  override name = "AuthenticationError";
}
export class PermissionDeniedError extends APIError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends APIError {
  override name = "NotFoundError";
}
export class ConflictError extends APIError {
  override name = "ConflictError";
}
export class RequestTooLargeError extends APIError {
  override name = "RequestTooLargeError";
}
export class UnprocessableEntityError extends APIError {
  override name = "UnprocessableEntityError";
}
export class RateLimitError extends APIError {
  override name = "RateLimitError";
  /** How long the server asked to wait (retry-after-ms, else Retry-After); undefined when it did not say. */
  readonly retryAfterMs: number | undefined;

  constructor(status: number | undefined, fields: ErrorFields, requestId: string | null, headers: Headers | undefined, message?: string) {
    super(status, fields, requestId, headers, message);
    this.retryAfterMs = serverDelayMs(headers, Date.now());
  }
}
export class InternalServerError extends APIError {
  override name = "InternalServerError";
}

/** No key was given and ALVEARE_API_KEY is unset: raised by the constructor, before any request. */
export class MissingApiKeyError extends AuthenticationError {
  override name = "MissingApiKeyError";
  constructor() {
    super(
      undefined,
      {
        type: "authentication_error",
        code: "missing_api_key",
        message: "Missing API key: pass { apiKey } or set ALVEARE_API_KEY.",
      },
      null,
      undefined,
    );
  }
}

/**
 * The key holds characters an HTTP header cannot carry (spaces, line breaks, non-ASCII): raised by the
 * constructor, before any request, and never with the key in its message.
 */
export class MalformedApiKeyError extends AuthenticationError {
  override name = "MalformedApiKeyError";
  constructor() {
    super(
      undefined,
      {
        type: "authentication_error",
        code: "invalid_api_key",
        message: "The API key holds characters an HTTP header cannot carry (spaces, line breaks or non-ASCII letters): copy it again.",
      },
      null,
      undefined,
    );
  }
}

/**
 * The base URL (the `baseURL` option, else ALVEARE_BASE_URL) is not an http:// or https:// URL:
 * raised by the constructor, before any request. An AlveareError, not an APIError: no call was made.
 */
export class InvalidBaseURLError extends AlveareError {
  override name = "InvalidBaseURLError";
}

/**
 * No complete answer: the connection failed before an HTTP answer (refused, reset, DNS), the answer's
 * body was cut off, or a stream was cut off or ended incomplete (without data: [DONE] while a choice
 * had not finished). The message names the host and the cause. `status` is undefined.
 */
export class APIConnectionError extends APIError {
  override name = "APIConnectionError";
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(undefined, { message }, null, undefined);
  }
}

/**
 * The timeout ran out: no answer, or not the whole body, within `timeout` (a stalled or trickling
 * body), or a stream sent nothing for `timeout`.
 */
export class APIConnectionTimeoutError extends APIConnectionError {
  override name = "APIConnectionTimeoutError";
}

/**
 * The caller aborted the request (its `signal`, or `stream.abort()`): raised at once, whatever the
 * request was doing (waiting for an answer, reading it, waiting to retry, streaming); never retried.
 * `cause` is the signal's reason (for `AbortSignal.timeout()`, a DOMException named "TimeoutError").
 *
 * Its `name` is "AbortError", not the class name: before 0.2.0 an abort rejected with fetch's own
 * DOMException, and code that tells aborts apart by `error.name === "AbortError"` (the usual idiom
 * for fetch) keeps working. `instanceof APIUserAbortError` (and `instanceof APIError`) is the
 * precise test.
 */
export class APIUserAbortError extends APIError {
  override name = "AbortError";
  constructor(override readonly cause?: unknown) {
    super(undefined, { message: "Request was aborted." }, null, undefined);
  }
}

/**
 * The most specific reason a request got no answer: the system error code
 * (ECONNREFUSED, ENOTFOUND, ECONNRESET …) when the runtime gives one, else the
 * innermost message. fetch itself only says "fetch failed".
 */
export function connectionCause(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  let current: unknown = error;
  for (let depth = 0; depth < 6 && typeof current === "object" && current !== null; depth++) {
    const { code, errors, cause, message: own } = current as { code?: unknown; errors?: unknown; cause?: unknown; message?: unknown };
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
    if (typeof own === "string" && own !== "") message = own;
    current = Array.isArray(errors) && errors.length > 0 ? errors[0] : cause;
  }
  return message;
}
