import { APIConnectionError, APIConnectionTimeoutError, APIError } from "./errors.js";
import { retryDelayMs, shouldRetry } from "./retry.js";
import { readSseData } from "./sse.js";
import type {
  ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, Health, InferRequest, InferResponse, ModelList, Usage,
} from "./types.js";

export interface ClientOptions {
  /** Defaults to the ALVEARE_API_KEY environment variable. */
  apiKey?: string | undefined;
  /** Defaults to ALVEARE_BASE_URL, then https://api.alveare.ai. */
  baseURL?: string | undefined;
  /** Per attempt, in milliseconds (default 60 s). */
  timeout?: number | undefined;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number | undefined;
  /** The most time spent waiting between attempts, in all (default 2 minutes). */
  maxRetryWaitMs?: number | undefined;
  fetch?: typeof fetch | undefined;
  /** For tests: how to wait, and what time it is. */
  sleep?: ((ms: number) => Promise<void>) | undefined;
  now?: (() => number) | undefined;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  timeout?: number | undefined;
  maxRetries?: number | undefined;
}

const env = (name: string): string | undefined =>
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];

/** A streamed chat completion: iterate it for chunks; the last may carry usage. */
export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  constructor(private readonly response: Response, private readonly controller: AbortController) {}

  async *[Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    const body = this.response.body;
    if (body === null) return;
    try {
      for await (const data of readSseData(body as unknown as AsyncIterable<Uint8Array>)) {
        if (data === "[DONE]") return;
        const event = JSON.parse(data) as ChatCompletionChunk | { error: Record<string, string> };
        if ("error" in event) throw APIError.fromResponse(500, event, this.response.headers);
        yield event;
      }
    } finally {
      this.controller.abort();
    }
  }

  /** Stops reading and closes the connection; the server stops generating. */
  abort(): void {
    this.controller.abort();
  }
}

/**
 * The Alveare API client. Transport (auth, timeouts, retries) lives here;
 * resources are thin methods on top.
 */
export class Alveare {
  readonly apiKey: string;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  private readonly maxRetryWaitMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env("ALVEARE_API_KEY");
    if (apiKey === undefined || apiKey === "") {
      throw new Error("Missing API key: pass { apiKey } or set ALVEARE_API_KEY.");
    }
    this.apiKey = apiKey;
    this.baseURL = (options.baseURL ?? env("ALVEARE_BASE_URL") ?? "https://api.alveare.ai").replace(/\/+$/, "");
    this.timeout = options.timeout ?? 60_000;
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 120_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.now = options.now ?? Date.now;
  }

  infer(params: InferRequest, options?: RequestOptions): Promise<InferResponse> {
    return this.json("POST", "/v1/infer", params, options);
  }

  readonly chat = {
    completions: {
      create: ((params: ChatCompletionCreateParams, options?: RequestOptions) =>
        params.stream === true ? this.stream(params, options) : this.json("POST", "/v1/chat/completions", params, options)) as {
        (params: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<ChatCompletionStream>;
        (params: ChatCompletionCreateParams & { stream?: false | undefined }, options?: RequestOptions): Promise<ChatCompletion>;
      },
    },
  };

  readonly models = { list: (options?: RequestOptions): Promise<ModelList> => this.json("GET", "/v1/models", undefined, options) };
  readonly usage = { get: (options?: RequestOptions): Promise<Usage> => this.json("GET", "/v1/usage", undefined, options) };

  health(options?: RequestOptions): Promise<Health> {
    return this.json("GET", "/health", undefined, options);
  }

  /** Any route, with the same auth, retries and errors (for routes newer than this SDK). */
  async json<T>(method: "GET" | "POST", path: string, body?: unknown, options?: RequestOptions): Promise<T> {
    const { response } = await this.send(method, path, body, options);
    return (await response.json()) as T;
  }

  private async stream(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletionStream> {
    const { response, controller } = await this.send("POST", "/v1/chat/completions", params, options);
    // From here on nothing is retried: the stream has started delivering.
    return new ChatCompletionStream(response, controller);
  }

  private async send(method: string, path: string, body: unknown, options: RequestOptions = {}): Promise<{ response: Response; controller: AbortController }> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    let waited = 0;
    for (let attempt = 0; ; attempt++) {
      const { response, controller, error } = await this.attempt(method, path, body, options);
      let failure: APIError;
      if (response?.ok) return { response, controller };
      if (response !== undefined) {
        const payload: unknown = await response.json().catch(() => undefined);
        failure = APIError.fromResponse(response.status, payload, response.headers);
        if (!shouldRetry(response.status, response.headers, failure.code)) throw failure;
      } else {
        if (options.signal?.aborted) throw error;
        failure = controller.signal.reason instanceof APIConnectionTimeoutError
          ? controller.signal.reason
          : new APIConnectionError(`Connection error: ${(error as Error).message}`, error);
      }
      if (attempt >= maxRetries) throw failure;
      const delay = retryDelayMs(attempt, failure.headers, this.now());
      if (waited + delay > this.maxRetryWaitMs) throw failure;
      waited += delay;
      await this.sleep(delay);
    }
  }

  /** One HTTP exchange; the timeout covers the wait for the response headers. */
  private async attempt(
    method: string, path: string, body: unknown, options: RequestOptions,
  ): Promise<{ response?: Response; controller: AbortController; error?: unknown }> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(new APIConnectionTimeoutError("Request timed out.")), options.timeout ?? this.timeout);
    try {
      const response = await this.fetchImpl(`${this.baseURL}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
      return { response, controller };
    } catch (error) {
      return { controller, error };
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}
