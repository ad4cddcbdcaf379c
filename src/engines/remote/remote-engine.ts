import type { Logger } from "pino";
import { Agent, DecoratorHandler, errors as undiciErrors, request, type Dispatcher } from "undici";
import { readSseEvents, SseEventTooLargeError } from "../../api/sse.js";
import { ApiError, errors, shortenedTo, UpstreamError } from "../../errors.js";
import { NETWORK_REASONS } from "../../failure-kind.js";
import { labelGrammar } from "../embedded/grammars.js";
import { caughtUpOrAborted, signalSource } from "../abort-watch.js";
import type { AbortWatch, ChoiceResult, Engine, FinishReason, GenerationRequest, GenerationResult, TokenLogprob } from "../types.js";
import { upstreamText } from "./remote-content.js";
import { upstreamLogprobs, type UpstreamLogprobs } from "./remote-logprobs.js";
import { ToolCallStream, upstreamMessages, upstreamToolFields, wholeToolCalls } from "./remote-tools.js";
import { estimatedPromptTokens, estimatedTokens, missingCounts, promptTokensBound, TEMPLATE_TOKENS, tokenCount } from "./remote-usage.js";
import type { RemoteEngineConfig, Upstream } from "./remote-kind.js";
import { LiveExchanges, type Expiring } from "./live-exchanges.js";
import type { TraceHeaders } from "../../observability/telemetry.js";
import { countDuration, noDurations, type DurationCounts } from "../../observability/duration-counts.js";
import { upstreamRefusal } from "./remote-refusal.js";

interface UpstreamChoice {
  index?: number;
  logprobs?: UpstreamLogprobs | null;
  /** A string as OpenAI sends it, or a list of chunks (Mistral's reasoning models): read with upstreamText. */
  message?: { content?: unknown; refusal?: unknown; tool_calls?: unknown };
  delta?: { content?: unknown; refusal?: unknown; tool_calls?: unknown };
  finish_reason?: string | null;
}
interface UpstreamBody {
  choices?: UpstreamChoice[];
  /** Counts as sent: read with tokenCount, as an upstream may send anything there. */
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; prompt_tokens_details?: { cached_tokens?: unknown } | null } | null;
  error?: { message?: string } | string | null;
}

/** The most an upstream's answer may hold, read whole: n (8) × max_tokens (4096) with 20 log-probabilities each is ~50 MiB. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** The most characters one event of a stream may hold: a chunk carries a token or a few, or at most a whole answer without log-probabilities. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/** An upstream answer over MAX_ANSWER_BYTES: read no further, hold no more of it. */
class UpstreamTooLargeError extends Error {
  override name = "UpstreamTooLargeError";
}

/** The most completion tokens an estimate may meter: what the request allowed (max_tokens per choice), as reserved. */
const completionBound = (req: GenerationRequest): number => req.maxTokens * (req.choices ?? 1);

/**
 * An upstream's own counts (undefined where it sent none), within what the request could hold: the prompt at most
 * promptTokensBound, the completion at most completionBound and at least `received` (the pieces streamed or the
 * log-probability entries, a token each: an upstream that reported its usage early, or 0, is still metered for what
 * the client got). A count past the bounds is an upstream's bug, and taken as it is it would charge without bound.
 */
function countedTokens(
  usage: UpstreamBody["usage"],
  req: GenerationRequest,
  received: number,
): { promptTokens: number | undefined; completionTokens: number | undefined } {
  const prompt = tokenCount(usage?.prompt_tokens);
  const completion = tokenCount(usage?.completion_tokens);
  // Under the template's allowance a count is within the bound whatever the prompt: not measured per request.
  // A plain object, no spreads: this is on every gateway request's path.
  return {
    promptTokens: prompt === undefined || prompt <= TEMPLATE_TOKENS ? prompt : Math.min(prompt, promptTokensBound(req)),
    completionTokens: completion === undefined ? undefined : Math.min(Math.max(completion, received), completionBound(req)),
  };
}

/** An upstream's choices, only those that are objects: anything else there is no choice. */
const choicesOf = (body: UpstreamBody): UpstreamChoice[] =>
  Array.isArray(body.choices) ? body.choices.filter((c): c is UpstreamChoice => typeof c === "object" && c !== null) : [];

/**
 * A whole answer's choices in the order of their `index`, as a stream's are placed: a server may list them in any
 * order. When any choice has no usable index (or two share one), the list's own order is all there is.
 */
function inIndexOrder(choices: UpstreamChoice[]): UpstreamChoice[] {
  const indexes = choices.map((c) => c.index);
  const usable = indexes.every((i) => Number.isInteger(i) && i! >= 0) && new Set(indexes).size === indexes.length;
  return usable ? [...choices].sort((a, b) => a.index! - b.index!) : choices;
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "UND_ERR_SOCKET"]);

function isConnectError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code !== undefined && CONNECT_ERRORS.has(code);
}

/**
 * Whether undici has written a try's request to its socket. A connection that fails after that may have brought the
 * request to the upstream (one that crashed on it, or closed the connection to drop it): sent again it would be
 * generated twice, billed twice by a paid upstream, and a prompt that crashes its upstream would take down the next
 * one too. Only a try not written yet is retried.
 */
interface Written {
  value: boolean;
}

/** Where a stream's request options carry its Written (undici's request() takes no handler of ours). */
const WRITTEN = Symbol("written");

/** Tells a stream's Written when undici has written its request (onRequestSent is undici's, not in its types). */
class WrittenWatch extends DecoratorHandler {
  constructor(
    handler: Dispatcher.DispatchHandlers,
    private readonly written: Written,
  ) {
    super(handler);
  }
  onRequestSent(): void {
    this.written.value = true;
  }
}

/** How long an idle connection to an upstream is kept for the next request. */
export const IDLE_CONNECTION_MS = 4_000;

/** Errors that mean no connection was made: the upstream is unavailable (503), not misbehaving (502). */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"]);
/** What undici and its HTTP parser say of a broken answer, in words: a client's message carries no library's identifiers. */
const ANSWER_REASONS: Readonly<Record<string, string>> = {
  UND_ERR_HEADERS_OVERFLOW: "its answer's headers were too large",
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: "its answer did not match its Content-Length",
  UND_ERR_RES_EXCEEDED_MAX_SIZE: "its answer was too large",
  UND_ERR_CLOSED: "connection closed",
  UND_ERR_DESTROYED: "connection closed",
};

/** What went wrong, in words that carry no address: system errors' messages name the host and port. */
function networkReason(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return NETWORK_REASONS[code] ?? ANSWER_REASONS[code] ?? (code.startsWith("HPE_") ? "a malformed HTTP answer" : code);
  return error instanceof Error ? error.message.slice(0, 200) : String(error).slice(0, 200);
}
/**
 * An answer still coming after the specialist's answer_timeout_ms in all. The read timeout is idle time: an upstream
 * that keeps sending something (keep-alive comments, whitespace) would otherwise hold the request, and its client, for ever.
 */
class AnswerTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the upstream's answer took over ${timeoutMs} ms in all`);
    this.name = "AnswerTimeoutError";
  }
}

const timeoutKind = (error: unknown): string =>
  error instanceof undiciErrors.ConnectTimeoutError
    ? "connecting"
    : error instanceof undiciErrors.HeadersTimeoutError
      ? "waiting for its answer"
      : error instanceof AnswerTimeoutError
        ? `its answer took over ${error.timeoutMs} ms in all`
        : "reading its answer";

function isTimeout(error: unknown): boolean {
  return (
    error instanceof AnswerTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError ||
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError
  );
}

/**
 * OpenAI's finish reasons pass through: a filtered answer called "stop" would read as complete. Otherwise an
 * answer ends in "tool_calls" exactly when it holds calls, whatever the upstream said: Gemini's OpenAI endpoint
 * says "stop" after calls, older servers the deprecated "function_call", and clients that see "tool_calls" run
 * the message's calls (an upstream's "tool_calls" with none it could give, empty or not calls at all, is "stop").
 */
const finishReason = (reason: string | null | undefined, calls = false): FinishReason =>
  reason === "length" || reason === "content_filter" ? reason : calls ? "tool_calls" : "stop";

/** A specialist's labels are one array for all its requests: its grammar is built once. */
const labelGrammars = new WeakMap<readonly string[], string>();

function cachedLabelGrammar(labels: readonly string[]): string {
  let grammar = labelGrammars.get(labels);
  if (grammar === undefined) {
    grammar = labelGrammar(labels);
    labelGrammars.set(labels, grammar);
  }
  return grammar;
}

/** Upstream HTTP error answers: their outcome is `http_error` whatever catalogue error they became. */
const upstreamAnswers = new WeakSet<ApiError>();

/** What an upstream said, kept for the operator's log line (bounded, and without the key we sent it: an upstream may echo it). */
function upstreamWords(text: string, secret: string | undefined): string {
  // The key first, then the cut: a key across the cut would leave its head in the line.
  return shortenedTo(secret ? text.split(secret).join("[the upstream key]") : text, 500);
}

/** An upstream answer that is not JSON: what the client hears is fixed, the parser's words go to the log. */
class UpstreamJsonError extends Error {
  override name = "UpstreamJsonError";
}

/** Parses what an upstream sent; its bytes reach only the log, bounded and without our key. */
function parseUpstream(text: string, secret: string | undefined): UpstreamBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UpstreamJsonError(`the upstream's answer is not valid JSON: ${upstreamWords((error as Error).message, secret)}`);
  }
  // `null`, a number or a list parse, but no field of them can be read.
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UpstreamJsonError(`the upstream's answer is JSON but not an object: ${upstreamWords(text, secret)}`);
  }
  return parsed as UpstreamBody;
}

/** The message of an OpenAI-shaped error body, or the body itself. */
function errorMessageOf(text: string): string {
  try {
    const e = (JSON.parse(text) as UpstreamBody).error;
    const message = typeof e === "string" ? e : e?.message;
    if (typeof message === "string") return message;
  } catch {
    // Not JSON: the raw text.
  }
  return text;
}

/** The longest wait an upstream's Retry-After passes on: a minute, the longest of our own 503s' and window limits'. */
const MAX_UPSTREAM_RETRY_AFTER_S = 60;

/**
 * An overloaded upstream's Retry-After in whole seconds (1 to 60), for our 503: a client then waits as long as the
 * upstream asks instead of retrying at once, but a broken or hostile upstream cannot park clients for days. A date
 * or anything else is left out.
 */
function retryAfterOf(value: string | undefined): Record<string, string> {
  if (value === undefined || !/^\d{1,6}$/.test(value.trim())) return {};
  return { "retry-after": String(Math.min(MAX_UPSTREAM_RETRY_AFTER_S, Math.max(1, Number(value)))) };
}

/** OpenAI-compatible servers answer 404 to a path they lack (a base_url without /v1) or a model they do not serve. */
const NOT_FOUND_HINT = "; check that base_url is the upstream's API root (…/v1 on most servers) and that it serves the model named";

/**
 * The catalogue error for an upstream's HTTP error answer. Only a 400 or a 422 (the
 * request itself refused, e.g. too long for the upstream's context; servers built
 * on FastAPI, Hugging Face's TGI among them, refuse with 422) passes the
 * upstream's words on to the client, bounded (see upstreamRefusal); any other
 * status is the operator's matter (a wrong key, a crash), so its words go to
 * the log only.
 */
function upstreamStatusError(status: number, text: string, secret: string | undefined, retryAfter?: string, location?: string): ApiError {
  const said = upstreamWords(errorMessageOf(text), secret);
  const error =
    status === 400 || status === 422
      ? upstreamRefusal(text, said)
      : status === 429 || status === 503
        ? errors.upstream(503, `The upstream engine is overloaded (HTTP ${status}).`, retryAfterOf(retryAfter))
        : errors.upstream(502, `The upstream engine answered HTTP ${status}.`);
  error.cause = new Error(
    `the upstream answered HTTP ${status}: ${said}${status === 404 ? NOT_FOUND_HINT : ""}${redirectHint(status, location, secret)}`,
  );
  upstreamAnswers.add(error);
  return error;
}

/**
 * A redirect is not followed (it could send the request, and the upstream key, anywhere): the operator is told
 * where it points, as an http:// base_url answered by a redirect to https:// is a common slip.
 */
const redirectHint = (status: number, location: string | undefined, secret: string | undefined): string =>
  status >= 300 && status < 400
    ? `; it redirects to ${location === undefined ? "(no Location)" : shortenedTo(upstreamWords(location, secret), 200)}, which is not followed: set base_url to where it points`
    : "";

/** Whether a status brings an answer: a 2xx with a body (a 204 or 205 has none; a 3xx is a redirect, not followed). */
const bringsAnswer = (status: number): boolean => status >= 200 && status < 300 && status !== 204 && status !== 205;

/** An answer's body as text, at most MAX_ANSWER_BYTES of it: an error's cut there (only its words for the log are wanted), an answer's refused. */
async function boundedText(body: Dispatcher.ResponseData["body"], answer = false): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes >= MAX_ANSWER_BYTES) {
      body.destroy();
      if (answer) throw new UpstreamTooLargeError(`over ${MAX_ANSWER_BYTES} bytes`);
      break;
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Whether a Content-Type is JSON's: a streamed request answered whole, by a server that ignores `stream`. */
const isJson = (type: string | string[] | undefined): boolean => /^application\/json\b/i.test(String(type ?? ""));

/** A failure an upstream reported in a 200 answer or an event: the client hears `message`, the log the upstream's words. */
function upstreamFailed(message: string, said: unknown, secret: string | undefined): ApiError {
  const failed = errors.upstream(502, message);
  failed.cause = new Error(
    `${message.replace(/^The upstream engine/, "the upstream").replace(/\.$/, "")}: ${upstreamWords(JSON.stringify(said), secret)}`,
  );
  return failed;
}

/** A refusal as text: an upstream may send anything in its place. */
const refusalOf = (message: { refusal?: unknown } | null | undefined): string => (typeof message?.refusal === "string" ? message.refusal : "");

/** Errors of an exchange the upstream had already answered (its body was cut): not a connection failure to retry. */
const cutAfterAnswer = new WeakSet<Error>();

/**
 * A non-streamed answer, collected by a dispatch handler of our own: undici's
 * request() wraps every response in a Readable body and an AsyncResource,
 * ~10% of a gateway request's CPU for a body read whole anyway. Aborts like
 * request() does: the request's signal aborts the exchange, before or after
 * the connection is assigned. It watches the request's abort, not its
 * AbortSignal, which is then never made.
 */
class WholeAnswer implements Dispatcher.DispatchHandlers, Expiring {
  statusCode = 0;
  slot = -1;
  /** The answer's Retry-After header, if any. */
  retryAfter: string | undefined;
  /** A redirect's Location header, if any. */
  location: string | undefined;
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private abort: ((error: Error) => void) | undefined;
  private settled = false;
  /** Set when the deadline passed before the exchange had a connection to abort. */
  private expired: Error | undefined;
  private readonly onAbort = (): void => this.abort?.(this.reason());

  constructor(
    private readonly aborted: AbortWatch,
    private readonly resolve: (answer: WholeAnswer) => void,
    private readonly reject: (error: unknown) => void,
    /** The engine's exchanges under way: this one is in it until it ends. */
    private readonly live: LiveExchanges,
    /** When the answer was first asked for: a retry after a dropped connection gets no deadline of its own. */
    readonly since: number,
    /** Set once undici has written the request. */
    private readonly written: Written,
  ) {
    aborted.watch(this.onAbort);
    live.add(this);
  }

  expire(error: AnswerTimeoutError): void {
    if (this.abort !== undefined) return this.abort(error);
    // Still connecting, or waiting for a connection: the answer fails now, and the connection is aborted when it comes.
    this.expired = error;
    if (this.end()) this.reject(error);
  }

  private reason(): Error {
    const reason = this.aborted.reason;
    return reason instanceof Error ? reason : new undiciErrors.RequestAbortedError();
  }

  /** The body as text (a UTF-8 byte order mark dropped, as undici's text() does). */
  text(): string {
    const body = this.chunks.length === 1 ? this.chunks[0]!.toString("utf8") : Buffer.concat(this.chunks).toString("utf8");
    return body.charCodeAt(0) === 0xfeff ? body.slice(1) : body;
  }

  onConnect(abort: (error?: Error) => void): void {
    if (this.aborted.aborted) abort(this.reason());
    else if (this.expired !== undefined) abort(this.expired);
    else this.abort = abort;
  }

  onRequestSent(): void {
    this.written.value = true;
  }

  onHeaders(statusCode: number, headers: Buffer[] | string[] | null): boolean {
    this.statusCode = statusCode;
    // Raw headers, names and values in turn; only a failure's are read (a success's are not needed, per request).
    for (let i = 0; !bringsAnswer(statusCode) && headers !== null && i + 1 < headers.length; i += 2) {
      const name = String(headers[i]).toLowerCase();
      if (name === "retry-after") this.retryAfter = String(headers[i + 1]);
      if (name === "location") this.location = String(headers[i + 1]);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.bytes > MAX_ANSWER_BYTES) {
      // An error answer keeps what came (its words are only logged); a success this big is no answer.
      this.abort?.(this.statusCode >= 400 ? new undiciErrors.RequestAbortedError() : new UpstreamTooLargeError(`over ${MAX_ANSWER_BYTES} bytes`));
      return false;
    }
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    if (this.end()) this.resolve(this);
  }

  onError(error: Error): void {
    if (!this.end()) return;
    if (this.statusCode === 0) return this.reject(error);
    // The upstream received the request and answered: never send it again. An error status keeps
    // its meaning with whatever part of its body came; a cut success is a failed exchange.
    if (this.statusCode >= 400) return this.resolve(this);
    cutAfterAnswer.add(error);
    this.reject(error);
  }

  private end(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.aborted.unwatch(this.onAbort);
    this.live.delete(this);
    return true;
  }
}

/**
 * A streamed exchange's own signal: it aborts when the client leaves (with the client's reason, so a client that
 * left still reads as one) or when the answer deadline passes.
 */
class StreamDeadline implements Expiring {
  slot = -1;
  private readonly controller = new AbortController();
  private readonly onClientAbort = (): void => this.controller.abort(this.client.reason);

  constructor(
    /** The client's abort, watched rather than listened to: no listener on its AbortSignal per request. */
    private readonly client: AbortWatch,
    private readonly live: LiveExchanges,
    readonly since: number,
  ) {
    if (client.aborted) this.controller.abort(client.reason);
    else client.watch(this.onClientAbort);
    live.add(this);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  expire(error: AnswerTimeoutError): void {
    this.controller.abort(error);
  }

  end(): void {
    this.client.unwatch(this.onClientAbort);
    this.live.delete(this);
  }
}

/**
 * How an exchange with an upstream ended, for the operator's metrics: answered
 * (`ok`), answered with an HTTP error, timed out, no connection (refused,
 * reset, unknown host), an answer we could not use (cut, malformed, no
 * choices), or left by our own client before it ended.
 */
export const UPSTREAM_OUTCOMES = ["ok", "http_error", "timeout", "connection_error", "bad_answer", "aborted"] as const;
export type UpstreamOutcome = (typeof UPSTREAM_OUTCOMES)[number];

/** Exchanges with one upstream since start, by outcome, and the seconds they took (a counter: its rate over the requests' is the mean). */
export interface UpstreamExchanges {
  upstream: string;
  model: string;
  /** Whether it is in rotation: its last request or health check reached it. */
  healthy: boolean;
  inFlight: number;
  outcomes: Record<UpstreamOutcome, number>;
  seconds: number;
  /** The exchanges' durations, per histogram bucket. */
  durations: DurationCounts;
}

/** `answered`: the upstream's answer had begun, so a connection closed under it cut an answer. */
function outcomeOf(error: unknown, answered: boolean): UpstreamOutcome {
  if (isTimeout(error)) return "timeout";
  if (error instanceof ApiError && upstreamAnswers.has(error)) return "http_error";
  if (!answered && !cutAfterAnswer.has(error as Error) && isConnectError(error)) return "connection_error";
  return "bad_answer";
}

/** An upstream with what choosing between upstreams needs to know. */
interface UpstreamState extends Upstream {
  inFlight: number;
  /** Counted per exchange; read by the metrics at scrape time, so a request costs two additions. */
  outcomes: Record<UpstreamOutcome, number>;
  seconds: number;
  durations: DurationCounts;
  healthy: boolean;
  /** Whether the operator was told this upstream answers without usage (once: it is how the upstream is set up). */
  usageWarned: boolean;
  /** Where POST /chat/completions goes, parsed once rather than per request. */
  completions: { origin: string; path: string };
}

function completionsTarget(baseUrl: string): { origin: string; path: string } {
  const url = new URL(`${baseUrl}/chat/completions`);
  return { origin: url.origin, path: `${url.pathname}${url.search}` };
}

/**
 * Serves a specialist from OpenAI-compatible servers (vLLM, llama-server,
 * Ollama, another Alveare). Each request goes to the healthy upstream with the
 * fewest requests in flight; a connection failure marks an upstream unhealthy
 * and the request is retried once, on another upstream when there is one;
 * periodic health checks bring upstreams back. Upstream failures become our
 * error shape: 504 for timeouts, 503 when overloaded, 502 for anything else.
 */
export class RemoteEngine implements Engine {
  readonly name: string;
  private readonly agent: Agent;
  /** The agent for streams, telling each request's Written (see WRITTEN). */
  private readonly streams: Dispatcher;
  private readonly upstreams: UpstreamState[];
  private readonly healthTimer: NodeJS.Timeout;
  /** Exchanges under way, swept for those past the answer deadline (one timer per engine, none per request). */
  private readonly live = new LiveExchanges();
  private readonly deadlineTimer: NodeJS.Timeout;
  private next = 0;

  constructor(
    private readonly target: Omit<RemoteEngineConfig, "kind">,
    /** Where an upstream's change of health is told: operators need to know when one is taken out and when it comes back. */
    private readonly logger?: Logger,
  ) {
    this.upstreams = target.upstreams.map((u) => ({
      ...u,
      inFlight: 0,
      healthy: true,
      usageWarned: false,
      completions: completionsTarget(u.baseUrl),
      outcomes: Object.fromEntries(UPSTREAM_OUTCOMES.map((o) => [o, 0])) as Record<UpstreamOutcome, number>,
      seconds: 0,
      durations: noDurations(),
    }));
    const first = target.upstreams[0];
    this.name = `remote:${first?.baseUrl ?? "?"}#${first?.model ?? "?"}${target.upstreams.length > 1 ? ` (+${target.upstreams.length - 1})` : ""}`;
    this.healthTimer = setInterval(() => void this.checkHealth(), target.healthCheckIntervalMs);
    this.healthTimer.unref();
    // The deadline is kept to within a quarter of itself, and a second at most.
    this.deadlineTimer = setInterval(() => this.expireLate(), Math.max(10, Math.min(1_000, target.answerTimeoutMs / 4)));
    this.deadlineTimer.unref();
    this.agent = new Agent({
      connect: { timeout: target.connectTimeoutMs },
      headersTimeout: target.readTimeoutMs,
      bodyTimeout: target.readTimeoutMs,
      // Under the 5 s that uvicorn (vLLM, TGI's router) and Node keep an idle connection without saying so: a
      // request written to one the upstream is closing that moment fails, and is not sent again (see Written).
      keepAliveTimeout: IDLE_CONNECTION_MS,
      connections: 256,
    });
    this.streams = this.agent.compose((dispatch) => (options, handler) => {
      const written = (options as { [WRITTEN]?: Written })[WRITTEN];
      return dispatch(options, written === undefined ? handler : (new WrittenWatch(handler, written) as Dispatcher.DispatchHandlers));
    });
  }

  /** Each upstream's health and exchanges so far, one entry per configured upstream (readiness, metrics). */
  get exchanges(): UpstreamExchanges[] {
    return this.upstreams.map((u) => ({
      upstream: u.baseUrl,
      model: u.model,
      healthy: u.healthy,
      inFlight: u.inFlight,
      outcomes: { ...u.outcomes },
      durations: [...u.durations],
      seconds: u.seconds,
    }));
  }

  /** Ends the exchanges whose answers are still coming after answer_timeout_ms: each fails as a timeout (504, or a cut stream). */
  private expireLate(): void {
    const late = this.live.takeStartedBefore(performance.now() - this.target.answerTimeoutMs);
    for (const exchange of late) exchange.expire(new AnswerTimeoutError(this.target.answerTimeoutMs));
  }

  /** Counts one exchange that began at `since` (performance.now()). */
  private counted(upstream: UpstreamState, outcome: UpstreamOutcome, since: number): void {
    const seconds = (performance.now() - since) / 1000;
    upstream.outcomes[outcome]++;
    upstream.seconds += seconds;
    countDuration(upstream.durations, seconds);
  }

  async generate(req: GenerationRequest): Promise<GenerationResult> {
    const stream = req.onText !== undefined;
    const aborted = req.abortWatch ?? signalSource(req.signal);
    req.onStarted?.();
    let upstream = this.pick(undefined);
    upstream.inFlight++;
    // The answer deadline runs from here, across the retry: it bounds the client's wait in all.
    const started = performance.now();
    let since = started;
    let outcome: UpstreamOutcome = "ok";
    let answered = false;
    const deadline = stream ? new StreamDeadline(aborted, this.live, started) : undefined;
    try {
      // A whole answer is read by a handler of our own (no body stream), a stream through undici's request().
      const exchange = (u: UpstreamState, written: Written): Promise<Dispatcher.ResponseData | WholeAnswer> =>
        deadline !== undefined
          ? this.send(u, this.body(u, req, true), req, deadline.signal, written)
          : this.sendWhole(u, this.body(u, req, false), req, aborted, started, written);
      let response: Dispatcher.ResponseData | WholeAnswer;
      const first: Written = { value: false };
      try {
        response = await exchange(upstream, first);
      } catch (error) {
        if (!isConnectError(error) || aborted.aborted || cutAfterAnswer.has(error as Error) || first.value) throw error;
        // Nothing reached the upstream, so one retry is safe: on another upstream when there is one.
        this.markHealth(upstream, false, networkReason(error));
        this.counted(upstream, "connection_error", since);
        upstream.inFlight--;
        upstream = this.pick(upstream);
        upstream.inFlight++;
        since = performance.now();
        response = await exchange(upstream, { value: false });
      }
      answered = true;
      if (response instanceof WholeAnswer) {
        if (!bringsAnswer(response.statusCode))
          throw upstreamStatusError(response.statusCode, response.text(), this.keyOf(upstream), response.retryAfter, response.location);
        return this.readWhole(parseUpstream(response.text(), this.keyOf(upstream)), req, upstream);
      }
      if (!bringsAnswer(response.statusCode)) {
        const header = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);
        throw upstreamStatusError(
          response.statusCode,
          await boundedText(response.body).catch(() => ""),
          this.keyOf(upstream),
          header(response.headers["retry-after"]),
          header(response.headers.location),
        );
      }
      const result = isJson(response.headers["content-type"])
        ? this.relayWhole(this.readWhole(parseUpstream(await boundedText(response.body, true), this.keyOf(upstream)), req, upstream), req)
        : await this.readStream(response, req, upstream);
      if (result.aborted) outcome = "aborted";
      return result;
    } catch (error) {
      outcome = aborted.aborted ? "aborted" : outcomeOf(error, answered);
      if (aborted.aborted) return { text: "", promptTokens: 0, completionTokens: 0, finishReason: "stop", aborted: true };
      if (isConnectError(error)) this.markHealth(upstream, false, networkReason(error));
      const failed = this.failure(error);
      if (failed instanceof UpstreamError) failed.upstream ??= { url: upstream.baseUrl, model: upstream.model };
      throw failed;
    } finally {
      deadline?.end();
      upstream.inFlight--;
      this.counted(upstream, outcome, since);
    }
  }

  /**
   * The least busy healthy upstream, round-robin among equals; any upstream
   * when none is healthy. Builds no arrays: it runs per request.
   */
  private pick(avoid: UpstreamState | undefined): UpstreamState {
    const all = this.upstreams;
    // Avoiding the only upstream leaves it as the only choice.
    const skip = all.length > 1 ? avoid : undefined;
    let healthy = 0;
    for (const u of all) if (u !== skip && u.healthy) healthy++;
    const eligible = (u: UpstreamState): boolean => u !== skip && (healthy === 0 || u.healthy);
    const count = healthy > 0 ? healthy : skip === undefined ? all.length : all.length - 1;
    const start = this.next++ % count;
    // The candidates in turn from the `start`-th; the first of the least busy wins.
    let best: UpstreamState | undefined;
    let bestTurn = 0;
    let rank = 0;
    for (const u of all) {
      if (!eligible(u)) continue;
      const turn = (rank++ - start + count) % count;
      if (best === undefined || u.inFlight < best.inFlight || (u.inFlight === best.inFlight && turn < bestTurn)) {
        best = u;
        bestTurn = turn;
      }
    }
    return best!;
  }

  /** Sets an upstream's health, with one log line when it changes (not on every failed request or check). */
  private markHealth(upstream: UpstreamState, healthy: boolean, reason: string): void {
    if (upstream.healthy === healthy) return;
    upstream.healthy = healthy;
    const fields = { upstream: upstream.baseUrl, model: upstream.model };
    if (healthy) this.logger?.info(fields, "upstream healthy again: it takes requests again");
    else
      this.logger?.warn({ ...fields, reason }, "upstream unhealthy: out of rotation until a health check passes (used anyway while none is healthy)");
  }

  /** Any HTTP answer from GET /models (even 401) means the server is up. */
  private async checkHealth(): Promise<void> {
    await Promise.all(
      this.upstreams.map(async (u) => {
        try {
          const r = await request(`${u.baseUrl}/models`, {
            method: "GET",
            dispatcher: this.agent,
            headers: this.headers(u),
            signal: AbortSignal.timeout(this.target.connectTimeoutMs),
          });
          await r.body.dump();
          this.markHealth(u, r.statusCode < 500, `health check answered HTTP ${r.statusCode}`);
        } catch (error) {
          this.markHealth(u, false, `health check failed: ${networkReason(error)}`);
        }
      }),
    );
  }

  private headers(upstream: UpstreamState, trace?: TraceHeaders): Record<string, string> {
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    if (trace !== undefined) {
      headers.traceparent = trace.traceparent;
      if (trace.tracestate !== undefined) headers.tracestate = trace.tracestate;
    }
    const key = this.keyOf(upstream);
    if (key) headers.authorization = `Bearer ${key}`;
    return headers;
  }

  private keyOf(upstream: UpstreamState): string | undefined {
    return upstream.apiKeyEnv ? process.env[upstream.apiKeyEnv] : undefined;
  }

  private body(upstream: UpstreamState, req: GenerationRequest, stream: boolean): string {
    const body: Record<string, unknown> = {
      model: upstream.model,
      messages: upstreamMessages(req.messages),
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      stream,
    };
    if (stream) body.stream_options = { include_usage: true };
    if (req.seed !== undefined) body.seed = upstreamSeed(req.seed);
    if ((req.choices ?? 1) > 1) body.n = req.choices;
    if (req.topLogprobs !== undefined) {
      body.logprobs = true;
      body.top_logprobs = req.topLogprobs;
    }
    if (req.stop.length > 0) body.stop = req.stop;
    Object.assign(body, upstreamToolFields(req.tools));
    const c = req.constraint;
    if (c.type === "json_object") body.response_format = { type: "json_object" };
    if (c.type === "json_schema") {
      // The caller's strict passes on: without it OpenAI takes the schema as a hint, not a rule.
      const strict = c.strict === undefined ? {} : { strict: c.strict };
      const description = c.description === undefined ? {} : { description: c.description };
      body.response_format = { type: "json_schema", json_schema: { name: c.name ?? "output", ...description, ...strict, schema: c.schema } };
    }
    if (c.type === "labels") {
      // vLLM reads guided_choice, llama-server reads grammar; others ignore unknown fields.
      body.guided_choice = c.labels;
      body.grammar = cachedLabelGrammar(c.labels);
    }
    return JSON.stringify(body);
  }

  private send(
    upstream: UpstreamState,
    body: string,
    req: GenerationRequest,
    signal: AbortSignal,
    written: Written,
  ): Promise<Dispatcher.ResponseData> {
    const options = {
      origin: upstream.completions.origin,
      path: upstream.completions.path,
      method: "POST" as const,
      body,
      headers: this.headers(upstream, req.traceHeaders),
      signal,
      [WRITTEN]: written,
    };
    const sent = this.streams.request(options);
    // undici acts on an abort once the request has a connection: one still being made would hold the deadline (or a
    // client that left) until connect_timeout_ms. The request is aborted when its connection comes.
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
      void sent.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** Sends a non-streamed request and collects its whole answer. */
  private sendWhole(
    upstream: UpstreamState,
    body: string,
    req: GenerationRequest,
    aborted: AbortWatch,
    since: number,
    written: Written,
  ): Promise<WholeAnswer> {
    return new Promise((resolve, reject) => {
      const answer = new WholeAnswer(aborted, resolve, reject, this.live, since, written);
      this.agent.dispatch(
        {
          origin: upstream.completions.origin,
          path: upstream.completions.path,
          method: "POST",
          body,
          headers: this.headers(upstream, req.traceHeaders),
        },
        answer,
      );
    });
  }

  /**
   * The client's error for a failed exchange. Network errors name their kind,
   * never the upstream's address (the operator's log line has the cause); one
   * that could not be reached, after the retry, is unavailable (503), as the
   * catalogue says.
   */
  private failure(error: unknown): ApiError {
    if (error instanceof ApiError) return error;
    // The parser's message quotes the upstream's bytes: the client hears only that the answer was broken.
    const failed =
      error instanceof UpstreamJsonError
        ? errors.upstream(502, "The upstream engine's answer was not valid JSON (cut short, or not an OpenAI-compatible answer).")
        : error instanceof UpstreamTooLargeError || error instanceof SseEventTooLargeError
          ? errors.upstream(502, "The upstream engine's answer was too large (over 64 MiB, or a stream event over 8 Mi characters).")
          : isTimeout(error)
            ? errors.upstream(504, `The upstream engine for this specialist timed out (${timeoutKind(error)}).`)
            : UNREACHABLE.has(String((error as { code?: unknown }).code))
              ? errors.upstream(503, `The upstream engine for this specialist could not be reached (${networkReason(error)}).`)
              : errors.upstream(502, `The upstream engine for this specialist failed (${networkReason(error)}).`);
    failed.cause = error;
    return failed;
  }

  /**
   * The tokens an answer is metered for: the upstream's counts, each estimated where it sent none (or no
   * whole number), as a misconfigured upstream (no usage, a proxy that drops it) would otherwise serve for
   * free. The operator is told once per upstream: it is how that upstream is set up, not a passing fault.
   * A count is taken within what the request could hold (see countedTokens).
   */
  private metered(
    upstream: UpstreamState,
    usage: UpstreamBody["usage"],
    req: GenerationRequest,
    completionEstimate: () => number,
    received: number,
  ): { promptTokens: number; completionTokens: number; cachedPromptTokens?: number } {
    const { promptTokens, completionTokens } = countedTokens(usage, req, received);
    if ((promptTokens === undefined || completionTokens === undefined) && !upstream.usageWarned) {
      upstream.usageWarned = true;
      this.logger?.warn(
        { upstream: upstream.baseUrl, model: upstream.model, missing: missingCounts(usage) },
        "upstream answered without token counts: its answers are metered with estimated tokens until it reports usage",
      );
    }
    // The upstream's own cache figure (vLLM, OpenAI), passed on when it is a count the prompt can hold.
    const cached = tokenCount(usage?.prompt_tokens_details?.cached_tokens);
    return {
      promptTokens: promptTokens ?? estimatedPromptTokens(req),
      completionTokens: completionTokens ?? Math.min(completionEstimate(), completionBound(req)),
      ...(cached !== undefined && promptTokens !== undefined && cached <= promptTokens ? { cachedPromptTokens: cached } : {}),
    };
  }

  private readWhole(parsed: UpstreamBody, req: GenerationRequest, upstream: UpstreamState): GenerationResult {
    // Some servers answer a failure with HTTP 200 and an error object: the operator's log gets its words.
    if (parsed.error !== undefined && parsed.error !== null)
      throw upstreamFailed("The upstream engine answered with an error.", parsed.error, this.keyOf(upstream));
    // The choices asked for (`n`): any more an upstream sent are not the client's, nor metered.
    const all = inIndexOrder(choicesOf(parsed)).slice(0, req.choices ?? 1);
    const choice = all[0];
    if (choice === undefined) throw errors.upstream(502, "The upstream engine answered without choices.");
    const toolCalls = wholeToolCalls(choice.message?.tool_calls);
    const wantsLogprobs = req.topLogprobs !== undefined;
    const choices = all.map((c): ChoiceResult => ({
      text: upstreamText(c.message?.content),
      ...(refusalOf(c.message) ? { refusal: refusalOf(c.message) } : {}),
      // Per-choice token counts are not in OpenAI's answer; usage below holds their sum.
      completionTokens: 0,
      finishReason: finishReason(c.finish_reason),
      ...(wantsLogprobs ? { logprobs: upstreamLogprobs(c.logprobs) } : {}),
    }));
    // Without usage: the text of every choice, or their log-probability entries (a token each) when there are more.
    const entries = wantsLogprobs ? choices.reduce((n, c) => n + (c.logprobs?.length ?? 0), 0) : 0;
    const estimate = (): number =>
      Math.max(
        estimatedTokens(choices.map((c) => c.text + (c.refusal ?? "")).join("") + toolCalls.map((c) => c.name + c.arguments).join("")),
        entries,
      );
    return {
      ...(toolCalls.length > 0 ? { toolCalls } : {}),
      text: choices[0]!.text,
      ...(choices[0]!.refusal ? { refusal: choices[0]!.refusal } : {}),
      ...this.metered(upstream, parsed.usage, req, estimate, entries),
      finishReason: finishReason(choice.finish_reason, toolCalls.length > 0),
      aborted: false,
      ...(wantsLogprobs ? { logprobs: choices[0]?.logprobs } : {}),
      ...((req.choices ?? 1) > 1 ? { choices } : {}),
    };
  }

  /**
   * A whole answer to a streamed request (a server that ignores `stream`), relayed as a stream of it: each
   * choice's text (with its log-probabilities) and refusal as one piece, and the calls as their pieces.
   */
  private relayWhole(result: GenerationResult, req: GenerationRequest): GenerationResult {
    const wantsLogprobs = req.topLogprobs !== undefined;
    (result.choices ?? [result]).forEach((choice, index) => {
      const logprobs = choice.logprobs ?? [];
      if (choice.text.length > 0 || logprobs.length > 0) req.onText?.(choice.text, { choice: index, ...(wantsLogprobs ? { logprobs } : {}) });
      if (choice.refusal) req.onText?.(choice.refusal, { choice: index, refusal: true });
    });
    (result.toolCalls ?? []).forEach((call, index) => {
      req.onToolCall?.({ index, id: call.id, name: call.name, arguments: "" });
      if (call.arguments.length > 0) req.onToolCall?.({ index, arguments: call.arguments });
    });
    return result;
  }

  private async readStream(response: Dispatcher.ResponseData, req: GenerationRequest, upstream: UpstreamState): Promise<GenerationResult> {
    const secret = this.keyOf(upstream);
    const wantsLogprobs = req.topLogprobs !== undefined;
    const choices: Array<{ text: string; refusal: string; finish?: string | null; logprobs: TokenLogprob[] }> = [];
    const choiceAt = (index: number) => (choices[index] ??= { text: "", refusal: "", logprobs: [] });
    choiceAt(0);
    let chunks = 0;
    /** The pieces received when the upstream last reported its usage: pieces after it mean the report was early. */
    let chunksAtUsage = 0;
    /** Whether any event held a choice: a stream of none is no answer, as a whole answer without choices is not. */
    let sawChoice = false;
    let usage: UpstreamBody["usage"];
    let done = false;
    let received = 0;
    const toolCalls = new ToolCallStream(req);
    // Without usage: a token per piece received, per log-probability entry, or per BPE-sized run of the text, whichever is most.
    const piecesReceived = (): number =>
      Math.max(
        chunks,
        choices.reduce((n, c) => n + c.logprobs.length, 0),
      );
    const estimate = (): number =>
      Math.max(
        piecesReceived(),
        estimatedTokens(choices.map((c) => c.text + c.refusal).join("") + toolCalls.toolCalls.map((c) => c.name + c.arguments).join("")),
      );
    // What the client received is what a request cut short is metered for (or the upstream's count so far, when
    // higher); the prompt once the upstream had read it (it sent a piece), as reported or else estimated.
    const cut = (): GenerationResult => {
      const counted = countedTokens(usage, req, 0);
      return {
        text: choices[0]!.text,
        promptTokens: counted.promptTokens ?? (sawChoice ? estimatedPromptTokens(req) : 0),
        completionTokens: Math.min(Math.max(counted.completionTokens ?? 0, estimate()), completionBound(req)),
        finishReason: "stop",
        aborted: true,
      };
    };
    try {
      for await (const { event, data } of readSseEvents(response.body, MAX_EVENT_CHARS)) {
        // A failure named by the event (TGI, proxies) rather than by an `error` object in its data, words or none.
        if (event === "error") throw upstreamFailed("The upstream engine failed mid-stream.", data, secret);
        // An event with no data (a keep-alive some servers send as `data:` or `event: ping`) carries nothing.
        if (data.trim() === "") continue;
        if (data === "[DONE]") {
          done = true;
          break;
        }
        // A stream's events are relayed as they come, but its text is also kept whole: bounded as a whole answer is.
        received += data.length;
        if (received > MAX_ANSWER_BYTES) throw new UpstreamTooLargeError(`a stream over ${MAX_ANSWER_BYTES} characters`);
        const chunk = parseUpstream(data, secret);
        if (chunk.error !== undefined && chunk.error !== null) throw upstreamFailed("The upstream engine failed mid-stream.", chunk.error, secret);
        for (const choice of choicesOf(chunk)) {
          const index = Number.isInteger(choice.index) && choice.index! >= 0 ? choice.index! : 0;
          // A choice past those asked for (`n`) is not the client's: neither relayed nor metered, as a whole answer's.
          if (index >= (req.choices ?? 1)) continue;
          sawChoice = true;
          const state = choiceAt(index);
          const delta = upstreamText(choice.delta?.content);
          const logprobs = wantsLogprobs ? upstreamLogprobs(choice.logprobs) : [];
          state.logprobs.push(...logprobs);
          const sent = choice.delta?.tool_calls;
          const pieces = index === 0 && Array.isArray(sent) ? sent : undefined;
          // Each piece of text or of a tool call is one token in practice (what counts when no usage comes).
          if (delta.length > 0 || (pieces?.length ?? 0) > 0) chunks++;
          // Entries that came with a tool call's pieces ride on its tool-call chunk, as the embedded engine streams them.
          const carried = delta.length === 0 && toolCalls.push(pieces, wantsLogprobs ? { choice: index, logprobs } : undefined);
          if (!carried) {
            if (delta.length > 0 || logprobs.length > 0) {
              state.text += delta;
              req.onText?.(delta, { choice: index, ...(wantsLogprobs ? { logprobs } : {}) });
            }
            // Pieces that came with no text were pushed above (and added nothing).
            if (delta.length > 0) toolCalls.push(pieces);
          }
          // A refusal (OpenAI's structured outputs) comes in pieces of its own, relayed as such.
          const refused = refusalOf(choice.delta);
          if (refused.length > 0) {
            chunks++;
            state.refusal += refused;
            req.onText?.(refused, { choice: index, refusal: true });
          }
          if (choice.finish_reason) state.finish = choice.finish_reason;
        }
        // Not reading on while our client is behind leaves the rest in the upstream's socket, not in memory.
        // Read after the event's pieces: a count sent with them covers them.
        if (chunk.usage) {
          usage = chunk.usage;
          chunksAtUsage = chunks;
        }
        const behind = req.whenWritable?.();
        if (behind !== undefined) await caughtUpOrAborted(behind, req.signal);
        if (req.signal.aborted) {
          response.body.destroy();
          return cut();
        }
      }
    } catch (error) {
      // Aborted while waiting for the next piece: the signal destroyed the body under the loop.
      if (req.signal.aborted) return cut();
      throw error;
    }
    const first = choices[0]!;
    if (!done && first.finish === undefined) throw errors.upstream(502, "The upstream engine closed the stream before it finished.");
    toolCalls.finish();
    // Nothing was relayed yet (a choice is what opens our stream): the client gets the 502 a whole answer gets.
    if (!sawChoice) throw errors.upstream(502, "The upstream engine answered without choices.");
    const calls = toolCalls.toolCalls;
    const several = (req.choices ?? 1) > 1;
    return {
      ...(calls.length > 0 ? { toolCalls: calls } : {}),
      text: first.text,
      ...(first.refusal.length > 0 ? { refusal: first.refusal } : {}),
      // An upstream's count is floored by the pieces received only when pieces came after it (a report sent early).
      ...this.metered(upstream, usage, req, estimate, chunks > chunksAtUsage ? piecesReceived() : 0),
      finishReason: finishReason(first.finish, calls.length > 0),
      aborted: false,
      ...(wantsLogprobs ? { logprobs: first.logprobs } : {}),
      ...(several
        ? {
            // The choices the upstream sent, as a whole answer has them: one that ignores n (Ollama) sends one, and
            // choices made up for the rest would read as empty answers.
            choices: Array.from({ length: choices.length }, (_, i) => choiceAt(i)).map((c): ChoiceResult => ({
              text: c.text,
              ...(c.refusal.length > 0 ? { refusal: c.refusal } : {}),
              completionTokens: 0,
              finishReason: finishReason(c.finish),
              ...(wantsLogprobs ? { logprobs: c.logprobs } : {}),
            })),
          }
        : {}),
    };
  }

  async close(): Promise<void> {
    clearInterval(this.healthTimer);
    clearInterval(this.deadlineTimer);
    await this.agent.close();
  }
}

/**
 * A seed as an upstream holding OpenAI's range (a signed 64-bit integer) takes it. A seed near ±2^63 reached us as
 * the double ±2^63, which JSON writes as ±9223372036854776000, past that range: the nearest double inside it instead.
 */
const INT64_DOUBLE_LIMIT = 2 ** 63 - 1024;
const upstreamSeed = (seed: number): number => Math.min(INT64_DOUBLE_LIMIT, Math.max(-INT64_DOUBLE_LIMIT, seed));
