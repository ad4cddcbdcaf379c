import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError, connectionCause, MissingApiKeyError } from "./errors.js";
import { retryDelayMs, shouldRetry } from "./retry.js";
import { readSseData } from "./sse.js";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  CreateEmbeddingResponse,
  EmbeddingCreateParams,
  Health,
  InferRequest,
  InferResponse,
  Model,
  ModelList,
  Usage,
} from "./types.js";

/** What the onRetry hook is told before each wait. */
export interface RetryEvent {
  /** 1 for the first retry, 2 for the second … */
  attempt: number;
  /** How long the client will wait before that retry. */
  delayMs: number;
  /** Why the previous attempt failed. */
  error: APIError;
  method: string;
  url: string;
}

export interface ClientOptions {
  /** Defaults to the ALVEARE_API_KEY environment variable. */
  apiKey?: string | undefined;
  /** Defaults to ALVEARE_BASE_URL, then https://api.alveare.ai. With or without a trailing /v1. */
  baseURL?: string | undefined;
  /** Per attempt, in milliseconds (default 60 s). */
  timeout?: number | undefined;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number | undefined;
  /** The most time spent waiting between attempts, in all (default 2 minutes). */
  maxRetryWaitMs?: number | undefined;
  /** Called before each wait between attempts; throwing from it stops the retries with that error. */
  onRetry?: ((event: RetryEvent) => void) | undefined;
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

const env = (name: string): string | undefined => (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];

export const DEFAULT_BASE_URL = "https://api.alveare.ai";

/**
 * The server root: trailing slashes and one trailing /v1 dropped, so a URL
 * copied from an OpenAI-style configuration (…/v1) works as well as the bare host.
 */
export function normalizeBaseURL(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/v1$/, "").replace(/\/+$/, "");
}

/** host:port of a URL, for messages; the URL itself when it does not parse. */
const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
};

/** A streamed chat completion: iterate it for chunks; the last may carry usage. */
export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  constructor(
    private readonly response: Response,
    private readonly controller: AbortController,
  ) {}

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
  private readonly onRetry: ((event: RetryEvent) => void) | undefined;
  private readonly debug: boolean;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: ((ms: number) => Promise<void>) | undefined;
  private readonly now: () => number;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env("ALVEARE_API_KEY");
    if (apiKey === undefined || apiKey === "") {
      throw new MissingApiKeyError();
    }
    this.apiKey = apiKey;
    this.baseURL = normalizeBaseURL(options.baseURL ?? env("ALVEARE_BASE_URL") ?? DEFAULT_BASE_URL);
    this.timeout = options.timeout ?? 60_000;
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 120_000;
    this.onRetry = options.onRetry;
    this.debug = env("ALVEARE_LOG")?.toLowerCase() === "debug";
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.sleep = options.sleep;
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

  /** Embedding vectors (POST /v1/embeddings), in OpenAI's shape. */
  readonly embeddings = {
    create: (params: EmbeddingCreateParams, options?: RequestOptions): Promise<CreateEmbeddingResponse> =>
      this.json("POST", "/v1/embeddings", params, options),
  };

  readonly models = {
    list: (options?: RequestOptions): Promise<ModelList> => this.json("GET", "/v1/models", undefined, options),
    /** One model of the list by id (`alveare-chat`); NotFoundError for one the key's list does not show. */
    retrieve: (model: string, options?: RequestOptions): Promise<Model> =>
      this.json("GET", `/v1/models/${encodeURIComponent(model)}`, undefined, options),
  };
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

  private async send(
    method: string,
    path: string,
    body: unknown,
    options: RequestOptions = {},
  ): Promise<{ response: Response; controller: AbortController }> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    let waited = 0;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(options.signal);
      const { response, controller, error } = await this.attempt(method, path, body, options);
      let failure: APIError;
      if (response?.ok) return { response, controller };
      if (response !== undefined) {
        const payload: unknown = await response.json().catch(() => undefined);
        failure = APIError.fromResponse(response.status, payload, response.headers);
        if (!shouldRetry(response.status, response.headers, failure.code)) throw failure;
      } else {
        throwIfAborted(options.signal);
        failure =
          controller.signal.reason instanceof APIConnectionTimeoutError
            ? controller.signal.reason
            : new APIConnectionError(`could not connect to ${hostOf(this.baseURL)} (${connectionCause(error)})`, error);
      }
      if (attempt >= maxRetries) throw failure;
      const delay = retryDelayMs(attempt, failure.headers, this.now());
      if (waited + delay > this.maxRetryWaitMs) throw failure;
      waited += delay;
      const event: RetryEvent = { attempt: attempt + 1, delayMs: delay, error: failure, method, url: `${this.baseURL}${path}` };
      this.log(
        `retry ${event.attempt} of ${maxRetries} for ${method} ${event.url} in ${Math.round(delay)} ms after ${failure.name}${failure.status === undefined ? "" : ` ${failure.status}`}: ${failure.message}`,
      );
      this.onRetry?.(event);
      await this.wait(delay, options.signal);
    }
  }

  /** The wait before a retry; an abort of the caller's signal ends it at once with APIUserAbortError. */
  private wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(new APIUserAbortError(signal?.reason));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      if (this.sleep === undefined) timer = setTimeout(done, ms);
      else
        this.sleep(ms).then(done, (error: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        });
    });
  }

  /** One HTTP exchange; the timeout covers the wait for the response headers. */
  private async attempt(
    method: string,
    path: string,
    body: unknown,
    options: RequestOptions,
  ): Promise<{ response?: Response; controller: AbortController; error?: unknown }> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timeout = options.timeout ?? this.timeout;
    const timer = setTimeout(
      () => controller.abort(new APIConnectionTimeoutError(`no response from ${hostOf(this.baseURL)} within ${timeout} ms`)),
      timeout,
    );
    const url = `${this.baseURL}${path}`;
    const started = this.now();
    try {
      const response = await this.fetchImpl(url, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
      this.log(`${method} ${url} -> ${response.status} in ${Math.round(this.now() - started)} ms${requestIdNote(response.headers)}`);
      return { response, controller };
    } catch (error) {
      this.log(`${method} ${url} failed in ${Math.round(this.now() - started)} ms: ${connectionCause(controller.signal.reason ?? error)}`);
      return { controller, error };
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** ALVEARE_LOG=debug: one stderr line per exchange and per retry. Never the key, headers or bodies. */
  private log(line: string): void {
    // eslint-disable-next-line no-console -- the opt-in debug log: stderr in Node, the console in a browser.
    if (this.debug) console.error(`[alveare] ${line}`);
  }
}

/** An aborted signal stops the call before anything else happens. */
const throwIfAborted = (signal: AbortSignal | undefined): void => {
  if (signal?.aborted) throw new APIUserAbortError(signal.reason);
};

const requestIdNote = (headers: Headers): string => {
  const id = headers.get("x-request-id");
  return id === null ? "" : ` (${id})`;
};
