import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  connectionCause,
  InvalidBaseURLError,
  MalformedApiKeyError,
  MissingApiKeyError,
} from "./errors.js";
import { retryDelayMs, shouldRetry } from "./retry.js";
import { readSseData, SseEventTooLargeError } from "./sse.js";
import { VERSION } from "./version.js";
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

/**
 * An answer with the server's id for the exchange (its `x-request-id`; null when it sent none), as the OpenAI SDKs
 * give it: quote it to support, or log it beside your own ids. Not enumerable, so not in JSON.stringify's output.
 */
export type WithRequestId<T> = T & { readonly _request_id: string | null };

export interface ClientOptions {
  /** Defaults to the ALVEARE_API_KEY environment variable. */
  apiKey?: string | undefined;
  /**
   * Defaults to ALVEARE_BASE_URL (when set and not empty), then https://api.alveare.ai. With or
   * without a trailing /v1. An http:// or https:// URL; in a browser page or worker also "" (the
   * page's origin) or a relative reference, resolved against the page (see resolveBaseURL).
   */
  baseURL?: string | undefined;
  /** Per attempt, in milliseconds (default 600 s, as OpenAI's SDK). */
  timeout?: number | undefined;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number | undefined;
  /** The most time spent waiting between attempts, in all (default 2 minutes). */
  maxRetryWaitMs?: number | undefined;
  /**
   * Called before each wait between attempts; throwing from it (or, for an async hook, rejecting) stops the
   * retries with that error. An async hook is awaited before the wait.
   */
  onRetry?: ((event: RetryEvent) => unknown) | undefined;
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
/** Milliseconds per attempt when the caller gives no `timeout`. */
const DEFAULT_TIMEOUT_MS = 600_000;

/**
 * `alveare-typescript/<version>`, then the runtime when it says (`node/20.11.1`). Undefined in a
 * browser or a browser's worker: the browser sends its own User-Agent, and where one set by script is
 * allowed (Firefox) it would need the API's CORS allowance, which does not list it.
 */
export function userAgent(): string | undefined {
  if (inBrowser()) return undefined;
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  return `alveare-typescript/${VERSION}${node === undefined ? "" : ` node/${node}`}`;
}

/** Whether this runs in a browser page or a browser's worker (a global document or WorkerGlobalScope). */
function inBrowser(): boolean {
  const scope = globalThis as { document?: unknown; WorkerGlobalScope?: unknown };
  return scope.document !== undefined || scope.WorkerGlobalScope !== undefined;
}

/**
 * The absolute base URL for `url`, or InvalidBaseURLError. Anywhere, an absolute http:// or https://
 * URL. In a browser page or worker, also what fetch itself would resolve against the page, resolved
 * here against `location.href` once: "" is the page's origin (requests go to <origin>/v1/…, as
 * same-origin apps did before the URL was checked), and a relative reference ("/gateway",
 * "../api") is resolved as a link would be. A relative reference whose first segment has a colon
 * ("127.0.0.1:8080", a URL missing its scheme) is refused there too: RFC 3986 does not let a
 * relative path begin so.
 */
export function resolveBaseURL(url: string, source: string): string {
  const page = (globalThis as { location?: { href?: unknown } }).location?.href;
  const relative = !/^[a-z][a-z0-9+.-]*:/i.test(url) && !(url.split(/[/?#]/, 1)[0] ?? "").includes(":");
  if (inBrowser() && typeof page === "string" && relative) {
    let resolved = "";
    try {
      resolved = new URL(url === "" ? "/" : url, page).href;
    } catch {
      resolved = url;
    }
    checkBaseURL(resolved, `${source} (${JSON.stringify(url)} resolved against the page)`);
    return resolved;
  }
  checkBaseURL(url, source);
  return url;
}

/**
 * The server root: trailing slashes and one trailing /v1 dropped, so a URL
 * copied from an OpenAI-style configuration (…/v1) works as well as the bare host.
 */
export function normalizeBaseURL(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/v1$/, "").replace(/\/+$/, "");
}

/**
 * Throws InvalidBaseURLError unless `url` is an absolute http:// or https:// URL with a host. Without
 * this, a URL missing its scheme ("127.0.0.1:8080") is taken as something else entirely and every
 * call fails with an obscure connection error.
 */
export function checkBaseURL(url: string, source: string): void {
  let host = "";
  if (/^https?:\/\//i.test(url)) {
    try {
      host = new URL(url).host;
    } catch {
      host = "";
    }
  }
  if (host !== "" && /[?#]/.test(url)) {
    throw new InvalidBaseURLError(
      `Invalid base URL ${JSON.stringify(url)} from ${source}: it must not have a query or fragment (every path is added to it).`,
    );
  }
  if (host !== "") return;
  const hint =
    url === ""
      ? " (leave it out to use ALVEARE_BASE_URL or the default)"
      : /^[a-z][a-z0-9+.-]*:\/\//i.test(url)
        ? ""
        : ` (did you mean ${JSON.stringify(`http://${url}`)}?)`;
  throw new InvalidBaseURLError(
    `Invalid base URL ${JSON.stringify(url)} from ${source}: it must be an http:// or https:// URL such as "http://127.0.0.1:8080"${hint}.`,
  );
}

/** host:port of a URL, for messages; the URL itself when it does not parse. */
const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
};

/**
 * The longest delay setTimeout takes (2^31 - 1 ms, about 24.8 days): a longer one, Infinity included, is
 * taken as 1 ms, with a TimeoutOverflowWarning. A timeout past it is no deadline in practice.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer for `ms`, or none for a timeout of Infinity (no deadline); a delay past setTimeout's range is capped to it. */
const deadline = (callback: () => void, ms: number): ReturnType<typeof setTimeout> | undefined =>
  ms === Infinity ? undefined : setTimeout(callback, Math.min(ms, MAX_TIMER_MS));

/**
 * `timeout` as given (option or per call), or a RangeError: it must be a number of milliseconds over 0, or
 * Infinity for no deadline. Zero, a negative number or NaN timed every request out at once (and retried it).
 */
function checkTimeout(timeout: number, source: string): number {
  if (typeof timeout !== "number" || !(timeout > 0)) {
    throw new RangeError(`Invalid ${source} ${String(timeout)}: it must be a number of milliseconds over 0, or Infinity for no deadline.`);
  }
  return timeout;
}

/**
 * The most one stream event may hold, in characters. An Alveare event carries one piece of one choice, a few KB at
 * most; a server (or a proxy between) that never ends a line or an event would otherwise grow it until the process
 * runs out of memory.
 */
const MAX_STREAM_EVENT_CHARS = 8 * 1024 * 1024;

/** What a stream needs besides its response: how long to wait for data, and whose abort to heed. */
interface StreamContext {
  /** Milliseconds without data after which the stream fails with APIConnectionTimeoutError. */
  idleTimeoutMs: number;
  host: string;
  /** Called once the stream is finished with (detaches the caller's signal). */
  release: () => void;
}

/**
 * A streamed chat completion: iterate it for chunks; the last may carry usage. Waiting longer than
 * the client's `timeout` for the next piece of data fails with APIConnectionTimeoutError; an abort
 * (the call's `signal`, or `abort()`) with APIUserAbortError.
 */
export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  private readonly context: StreamContext;
  /** The server's id for this exchange (its `x-request-id`), for logs and support; null when it sent none. */
  readonly _request_id: string | null;

  constructor(
    private readonly response: Response,
    private readonly controller: AbortController,
    context?: StreamContext,
  ) {
    this.context = context ?? { idleTimeoutMs: DEFAULT_TIMEOUT_MS, host: hostOf(response.url), release: () => undefined };
    this._request_id = response.headers.get("x-request-id");
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    const body = this.response.body;
    /** Each choice seen, by index: whether it has had its finish_reason. */
    const finished = new Map<number, boolean>();
    /** An event's data that is not a JSON object: a cut, when nothing follows it; otherwise the server's garbage. */
    let unreadable: string | undefined;
    try {
      if (body !== null) {
        for await (const data of this.events(body)) {
          if (unreadable !== undefined) {
            throw new APIError(
              this.response.status,
              {},
              this.response.headers.get("x-request-id"),
              this.response.headers,
              `the stream from ${this.context.host} sent an event whose data is not a JSON object: ${JSON.stringify(unreadable.slice(0, 40))}`,
            );
          }
          if (data === "[DONE]") return;
          const event = parseEvent(data);
          if (event === undefined) {
            unreadable = data;
            continue;
          }
          // Some OpenAI-compatible proxies send "error": null on every chunk: that is no error. Some servers send a
          // bare string (TGI's {"error": "…"}): its message is kept.
          if (event.error !== undefined && event.error !== null) {
            const error = typeof event.error === "string" ? { error: { message: event.error } } : event;
            throw APIError.fromStreamEvent(error, this.response.headers);
          }
          for (const choice of event.choices ?? []) {
            finished.set(choice.index, finished.get(choice.index) === true || (choice.finish_reason ?? null) !== null);
          }
          yield event;
        }
      }
      // A complete stream ends with [DONE], a failed one with an error event. Without [DONE] (a proxy or
      // another OpenAI-compatible server may leave it out) it is complete when every choice it had has
      // finished; otherwise it was cut short. Data that does not parse at the very end is an event the cut split.
      if (unreadable !== undefined) {
        throw new APIConnectionError(
          `the stream from ${this.context.host} ended inside an event (data that is not a JSON object: ${JSON.stringify(unreadable.slice(0, 40))}): the answer is incomplete`,
        );
      }
      const open = [...finished].filter(([, done]) => !done).map(([index]) => index);
      if (finished.size > 0 && open.length === 0) return;
      throw new APIConnectionError(
        `the stream from ${this.context.host} ended before data: [DONE]: the answer is incomplete (${
          finished.size === 0 ? "no choice arrived" : `${open.length === 1 ? "choice" : "choices"} ${open.join(", ")} without a finish_reason`
        })`,
      );
    } finally {
      this.controller.abort();
      this.context.release();
    }
  }

  /** Each event's data; an event past MAX_STREAM_EVENT_CHARS is the server's error, and the stream is read no further. */
  private async *events(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
    try {
      yield* readSseData(this.chunks(body), MAX_STREAM_EVENT_CHARS);
    } catch (error) {
      if (!(error instanceof SseEventTooLargeError)) throw error;
      throw new APIError(
        this.response.status,
        {},
        this.response.headers.get("x-request-id"),
        this.response.headers,
        `the stream from ${this.context.host} sent ${error.message}, more than any answer's event holds: it was read no further`,
      );
    }
  }

  /** The body's bytes, each read given `idleTimeoutMs`; a failed read becomes the SDK's error for its cause. */
  private async *chunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
    const reader = body.getReader();
    const { idleTimeoutMs, host } = this.context;
    try {
      for (;;) {
        const timer = deadline(
          () => this.controller.abort(new APIConnectionTimeoutError(`no data from ${host} for ${idleTimeoutMs} ms while streaming`)),
          idleTimeoutMs,
        );
        let result: Awaited<ReturnType<typeof reader.read>>;
        try {
          result = await reader.read();
        } catch (error) {
          const reason: unknown = this.controller.signal.reason;
          if (reason instanceof APIConnectionTimeoutError || reason instanceof APIUserAbortError) throw reason;
          if (this.controller.signal.aborted) throw new APIUserAbortError(reason);
          throw new APIConnectionError(`the stream from ${host} was cut off (${connectionCause(error)})`, error);
        } finally {
          clearTimeout(timer);
        }
        if (result.done) return;
        yield result.value;
      }
    } finally {
      reader.releaseLock();
    }
  }

  /**
   * Stops reading and closes the connection; the server stops generating. Also detaches the stream
   * from the call's signal, which matters for a stream that was never iterated (iteration detaches it
   * when it ends).
   */
  abort(): void {
    this.controller.abort(new APIUserAbortError());
    this.context.release();
  }
}

/** An event's data as a chunk (or an error event), or undefined when it is not a JSON object. */
function parseEvent(data: string): (ChatCompletionChunk & { error?: Record<string, string> | string | null }) | undefined {
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch {
    return undefined;
  }
  return typeof event === "object" && event !== null && !Array.isArray(event) ? (event as ChatCompletionChunk) : undefined;
}

/**
 * The Alveare API client. Transport (auth, timeouts, retries) lives here;
 * resources are thin methods on top.
 */
export class Alveare {
  /** Not enumerable: logging or serialising the client does not print the key. */
  declare readonly apiKey: string;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  private readonly maxRetryWaitMs: number;
  private readonly onRetry: ((event: RetryEvent) => unknown) | undefined;
  private readonly debug: boolean;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: ((ms: number) => Promise<void>) | undefined;
  private readonly now: () => number;
  private readonly userAgent: string | undefined;
  /** Said when a connection fails: a self-hosted key sent to the hosted default needs baseURL. */
  private readonly hostHint: string;

  constructor(options: ClientOptions = {}) {
    // A line break pasted with the key is dropped; anything else a header cannot carry is refused here, not sent.
    const apiKey = (options.apiKey ?? env("ALVEARE_API_KEY"))?.trim();
    if (apiKey === undefined || apiKey === "") {
      throw new MissingApiKeyError();
    }
    if (!/^[\x21-\x7e]+$/.test(apiKey)) throw new MalformedApiKeyError();
    Object.defineProperty(this, "apiKey", { value: apiKey, enumerable: false });
    // As with the key, whitespace around the URL (a pasted line break, a space left in a .env file) is dropped:
    // kept, it passed the check and then broke every request ("Invalid URL", or a path of "/v1 /…").
    const fromEnv = env("ALVEARE_BASE_URL")?.trim();
    const [baseURL, source] =
      options.baseURL !== undefined
        ? [options.baseURL.trim(), "the baseURL option"]
        : fromEnv !== undefined && fromEnv !== "" // an empty variable counts as unset, as in Python
          ? [fromEnv, "ALVEARE_BASE_URL"]
          : [DEFAULT_BASE_URL, "the default"];
    this.baseURL = normalizeBaseURL(resolveBaseURL(baseURL, source));
    this.hostHint =
      source === "the default"
        ? "; no baseURL was given, so this is the hosted service: for your own server pass baseURL or set ALVEARE_BASE_URL"
        : "";
    // Ten minutes, as the OpenAI SDKs: a long answer from a small model on a CPU takes minutes, and a call that
    // timed out is retried as a new generation, billed again.
    this.timeout = checkTimeout(options.timeout ?? DEFAULT_TIMEOUT_MS, "timeout option");
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 120_000;
    this.onRetry = options.onRetry;
    this.debug = env("ALVEARE_LOG")?.toLowerCase() === "debug";
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.sleep = options.sleep;
    this.now = options.now ?? Date.now;
    this.userAgent = userAgent();
  }

  infer(params: InferRequest, options?: RequestOptions): Promise<WithRequestId<InferResponse>> {
    return this.json("POST", "/v1/infer", params, options);
  }

  readonly chat = {
    completions: {
      create: ((params: ChatCompletionCreateParams, options?: RequestOptions) =>
        params.stream === true ? this.stream(params, options) : this.json("POST", "/v1/chat/completions", params, options)) as {
        (params: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<ChatCompletionStream>;
        (params: ChatCompletionCreateParams & { stream?: false | undefined }, options?: RequestOptions): Promise<WithRequestId<ChatCompletion>>;
        /** Params whose `stream` is only known as a boolean (the exported type itself): either answer. */
        (params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletionStream | WithRequestId<ChatCompletion>>;
      },
    },
  };

  /** Embedding vectors (POST /v1/embeddings), in OpenAI's shape. */
  readonly embeddings = {
    create: (params: EmbeddingCreateParams, options?: RequestOptions): Promise<WithRequestId<CreateEmbeddingResponse>> =>
      this.json("POST", "/v1/embeddings", params, options),
  };

  readonly models = {
    list: (options?: RequestOptions): Promise<WithRequestId<ModelList>> => this.json("GET", "/v1/models", undefined, options),
    /** One model of the list by id (`alveare-chat`); NotFoundError for one the key's list does not show. */
    retrieve: (model: string, options?: RequestOptions): Promise<WithRequestId<Model>> =>
      this.json("GET", `/v1/models/${encodeURIComponent(model)}`, undefined, options),
  };
  readonly usage = { get: (options?: RequestOptions): Promise<WithRequestId<Usage>> => this.json("GET", "/v1/usage", undefined, options) };

  health(options?: RequestOptions): Promise<WithRequestId<Health>> {
    return this.json("GET", "/health", undefined, options);
  }

  /**
   * Any route, with the same auth, retries and errors (for routes newer than this SDK). An object answer carries
   * the server's id for the exchange as `_request_id`, not enumerable: JSON.stringify and deep comparisons skip it.
   */
  async json<T>(method: "GET" | "POST", path: string, body?: unknown, options?: RequestOptions): Promise<WithRequestId<T>> {
    const { status, headers, text } = await this.send(method, path, body, options, false);
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new APIError(status, {}, headers.get("x-request-id"), headers, `the server answered HTTP ${status} with a body that is not JSON`);
    }
    if (answer !== null && typeof answer === "object") {
      Object.defineProperty(answer, "_request_id", { value: headers.get("x-request-id"), enumerable: false });
    }
    return answer as WithRequestId<T>;
  }

  private async stream(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletionStream> {
    const { response, controller, release } = await this.send("POST", "/v1/chat/completions", params, options, true);
    // From here on nothing is retried: the stream has started delivering.
    return new ChatCompletionStream(response, controller, {
      idleTimeoutMs: options?.timeout ?? this.timeout,
      host: hostOf(this.baseURL),
      release,
    });
  }

  private send(method: string, path: string, body: unknown, options: RequestOptions | undefined, stream: false): Promise<Answer>;
  private send(method: string, path: string, body: unknown, options: RequestOptions | undefined, stream: true): Promise<OpenStream>;
  private async send(method: string, path: string, body: unknown, options: RequestOptions = {}, stream: boolean): Promise<Answer | OpenStream> {
    if (options.timeout !== undefined) checkTimeout(options.timeout, "timeout of this call");
    const maxRetries = options.maxRetries ?? this.maxRetries;
    let waited = 0;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(options.signal);
      const outcome = await this.attempt(method, path, body, options, stream);
      let failure: APIError;
      if ("error" in outcome) {
        throwIfAborted(options.signal);
        failure = outcome.error;
        if (!outcome.retry) throw failure;
      } else if ("response" in outcome || (outcome.status >= 200 && outcome.status < 300)) {
        return outcome;
      } else {
        failure = APIError.fromResponse(outcome.status, parseJson(outcome.text), outcome.headers);
        if (!shouldRetry(outcome.status, outcome.headers, failure.code)) throw failure;
      }
      if (attempt >= maxRetries) throw failure;
      const delay = retryDelayMs(attempt, failure.headers, this.now());
      if (delay === undefined || waited + delay > this.maxRetryWaitMs) throw failure;
      waited += delay;
      const event: RetryEvent = { attempt: attempt + 1, delayMs: delay, error: failure, method, url: `${this.baseURL}${path}` };
      this.log(
        `retry ${event.attempt} of ${maxRetries} for ${method} ${event.url} in ${Math.round(delay)} ms after ${failure.name}${failure.status === undefined ? "" : ` ${failure.status}`}: ${failure.message}`,
      );
      // Awaited: an async hook that rejects stops the retries as a throwing one does (its rejection went unhandled).
      await this.onRetry?.(event);
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

  /**
   * One HTTP exchange. The timeout covers the whole of it: the response headers and then its whole
   * body — except a successful stream's body, which the stream reads with an idle timeout of its own.
   * The caller's signal aborts it at any point (a stream's too, until the stream is released).
   */
  private async attempt(
    method: string,
    path: string,
    body: unknown,
    options: RequestOptions,
    stream: boolean,
  ): Promise<Answer | OpenStream | Failed> {
    const controller = new AbortController();
    const signal = options.signal;
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const release = (): void => signal?.removeEventListener("abort", onAbort);
    const host = hostOf(this.baseURL);
    const timeout = options.timeout ?? this.timeout;
    /** The answer's status, once its headers have arrived. */
    let status: number | undefined;
    // The server records a request as served before it sends a 2xx: a POST whose 2xx body then fails
    // was most likely served (and billed), so it is not retried. A GET is safe to send again.
    const served = (): boolean => status !== undefined && status >= 200 && status < 300 && method !== "GET";
    const servedNote = (): string =>
      served() ? `; the server had answered ${status}, so the request was most likely served (and billed): not retried` : "";
    const timer = deadline(
      () =>
        controller.abort(
          new APIConnectionTimeoutError(
            status !== undefined
              ? `the response from ${host} did not arrive in full within ${timeout} ms${servedNote()}`
              : `no response from ${host} within ${timeout} ms`,
          ),
        ),
      timeout,
    );
    const url = `${this.baseURL}${path}`;
    const started = this.now();
    let streaming = false;
    try {
      const response = await this.fetchImpl(url, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          accept: "application/json",
          ...(this.userAgent === undefined ? {} : { "user-agent": this.userAgent }),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        // Never followed: a redirect to another host would carry the key there, and a POST would come back a GET.
        redirect: "manual",
      });
      status = response.status;
      this.log(`${method} ${url} -> ${response.status} in ${Math.round(this.now() - started)} ms${requestIdNote(response.headers)}`);
      if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400)) {
        await response.body?.cancel().catch(() => undefined);
        return { error: redirectError(response), retry: false };
      }
      if (stream && response.ok) {
        streaming = true;
        return { response, controller, release };
      }
      const text = await response.text();
      return { status: response.status, headers: response.headers, text };
    } catch (error) {
      const reason: unknown = controller.signal.reason;
      this.log(`${method} ${url} failed in ${Math.round(this.now() - started)} ms: ${connectionCause(reason ?? error)}`);
      if (reason instanceof APIConnectionTimeoutError) return { error: reason, retry: !served() };
      const cause = connectionCause(error);
      return {
        error: new APIConnectionError(
          status !== undefined
            ? `the response from ${host} was cut off (${cause})${servedNote()}`
            : `could not connect to ${host} (${cause})${this.hostHint}`,
          error,
        ),
        retry: !served(),
      };
    } finally {
      clearTimeout(timer);
      if (!streaming) release();
    }
  }

  /** ALVEARE_LOG=debug: one stderr line per exchange and per retry. Never the key, headers or bodies. */
  private log(line: string): void {
    // eslint-disable-next-line no-console -- the opt-in debug log: stderr in Node, the console in a browser.
    if (this.debug) console.error(`[alveare] ${line}`);
  }
}

/** A complete response, its body read. */
interface Answer {
  status: number;
  headers: Headers;
  text: string;
}
/** A successful streaming response whose body the stream reads. */
interface OpenStream {
  response: Response;
  controller: AbortController;
  release: () => void;
}
/** No complete response: a connection failure or a timeout. */
interface Failed {
  error: APIError;
  /** False once a non-GET request had a 2xx status: it was most likely served, and a retry would be billed again. */
  retry: boolean;
}

/** A redirect answered (a browser's fetch shows none of it: status 0, no Location). */
function redirectError(response: Response): APIError {
  const location = response.headers.get("location");
  const where = location === null ? "" : ` to ${location}`;
  return new APIError(
    response.status === 0 ? undefined : response.status,
    { type: "invalid_request_error", code: "redirected" },
    response.headers.get("x-request-id"),
    response.headers,
    `the server answered with a redirect${where}, which this SDK does not follow (it would carry your key there): set baseURL to the address that answers`,
  );
}

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
};

/** An aborted signal stops the call before anything else happens. */
const throwIfAborted = (signal: AbortSignal | undefined): void => {
  if (signal?.aborted) throw new APIUserAbortError(signal.reason);
};

const requestIdNote = (headers: Headers): string => {
  const id = headers.get("x-request-id");
  return id === null ? "" : ` (${id})`;
};
