/**
 * The error catalogue of DESIGN.md: every failure any layer reports is an ApiError
 * built from one of these constructors, so status, type and code stay consistent.
 */
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

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

const invalid = (code: string, message: string, param: string | null = null): ApiError =>
  new ApiError(400, "invalid_request_error", code, message, param);

export const errors = {
  invalidJson: (detail: string) => invalid("invalid_json", `We could not parse the JSON body of your request: ${detail}`),
  missingParameter: (param: string) => invalid("missing_parameter", `Missing required parameter: '${param}'.`, param),
  invalidParameter: (param: string, message: string) => invalid("invalid_parameter", `Invalid '${param}': ${message}`, param),
  modelNotFound: (name: string, param: string) =>
    invalid("model_not_found", `The specialist '${name}' does not exist. GET /v1/models lists the specialists you can use.`, param),
  contextLengthExceeded: (promptTokens: number, contextSize: number, param: string) =>
    invalid(
      "context_length_exceeded",
      `This specialist's context holds ${contextSize} tokens, but your prompt is ${promptTokens} tokens. Shorten the prompt.`,
      param,
    ),
  notFound: (method: string, url: string) =>
    new ApiError(404, "invalid_request_error", "not_found", `Unknown route: ${method} ${url}`),
  requestTooLarge: (limit: number) =>
    new ApiError(413, "invalid_request_error", "request_too_large", `Request body is larger than the limit of ${limit} bytes.`),
  internal: () =>
    new ApiError(500, "server_error", "internal_error", "The server had an error while processing your request. Retry with backoff."),
  overloaded: (retryAfterSeconds: number) =>
    new ApiError(503, "server_error", "overloaded", "The engine is at capacity and its queue is full. Retry shortly.", null, {
      "retry-after": String(retryAfterSeconds),
    }),
  upstream: (status: 502 | 503 | 504, message: string) => new ApiError(status, "server_error", "upstream_error", message),
} as const;
