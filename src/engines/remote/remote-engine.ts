import { Agent, errors as undiciErrors, request, type Dispatcher } from "undici";
import { readSseData } from "../../api/sse.js";
import { ApiError, errors } from "../../errors.js";
import type { RemoteTarget } from "../../specialists/specialist.js";
import { labelGrammar } from "../embedded/grammars.js";
import type { Engine, FinishReason, GenerationRequest, GenerationResult } from "../types.js";

interface UpstreamChoice {
  message?: { content?: string | null };
  delta?: { content?: string | null };
  finish_reason?: string | null;
}
interface UpstreamBody {
  choices?: UpstreamChoice[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string } | string;
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "UND_ERR_SOCKET"]);

function isConnectError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code !== undefined && CONNECT_ERRORS.has(code);
}

function isTimeout(error: unknown): boolean {
  return (
    error instanceof undiciErrors.ConnectTimeoutError ||
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError
  );
}

const finishReason = (reason: string | null | undefined): FinishReason => (reason === "length" ? "length" : "stop");

/**
 * Serves a specialist from any OpenAI-compatible server (vLLM, llama-server,
 * Ollama, another Alveare). Upstream failures become our error shape: 504 for
 * timeouts, 503 when the upstream is overloaded, 502 for anything else it got wrong.
 */
export class RemoteEngine implements Engine {
  readonly name: string;
  private readonly agent: Agent;
  private readonly url: string;

  constructor(private readonly target: RemoteTarget) {
    this.name = `remote:${target.baseUrl}#${target.model}`;
    this.url = `${target.baseUrl}/chat/completions`;
    this.agent = new Agent({
      connect: { timeout: target.connectTimeoutMs },
      headersTimeout: target.readTimeoutMs,
      bodyTimeout: target.readTimeoutMs,
      keepAliveTimeout: 10_000,
      connections: 256,
    });
  }

  async generate(req: GenerationRequest): Promise<GenerationResult> {
    const stream = req.onText !== undefined;
    const body = JSON.stringify(this.body(req, stream));
    let response: Dispatcher.ResponseData;
    try {
      response = await this.send(body, req.signal);
    } catch (error) {
      if (req.signal.aborted) return { text: "", promptTokens: 0, completionTokens: 0, finishReason: "stop", aborted: true };
      throw this.failure(error);
    }
    if (response.statusCode >= 400) throw await this.upstreamStatus(response);
    try {
      return stream ? await this.readStream(response, req) : await this.readWhole(response);
    } catch (error) {
      if (req.signal.aborted) return { text: "", promptTokens: 0, completionTokens: 0, finishReason: "stop", aborted: true };
      throw this.failure(error);
    }
  }

  private body(req: GenerationRequest, stream: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = {
      model: this.target.model,
      messages: req.messages,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      stream,
    };
    if (stream) body.stream_options = { include_usage: true };
    if (req.seed !== undefined) body.seed = req.seed;
    if (req.stop.length > 0) body.stop = req.stop;
    const c = req.constraint;
    if (c.type === "json_object") body.response_format = { type: "json_object" };
    if (c.type === "json_schema") body.response_format = { type: "json_schema", json_schema: { name: "output", schema: c.schema } };
    if (c.type === "labels") {
      // vLLM reads guided_choice, llama-server reads grammar; others ignore unknown fields.
      body.guided_choice = c.labels;
      body.grammar = labelGrammar(c.labels);
    }
    return body;
  }

  /** One retry when the connection itself failed: nothing reached the upstream, so repeating is safe. */
  private async send(body: string, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const key = this.target.apiKeyEnv ? process.env[this.target.apiKeyEnv] : undefined;
    if (key) headers.authorization = `Bearer ${key}`;
    const attempt = (): Promise<Dispatcher.ResponseData> =>
      request(this.url, { method: "POST", body, headers, dispatcher: this.agent, signal });
    try {
      return await attempt();
    } catch (error) {
      if (!isConnectError(error) || signal.aborted) throw error;
      return attempt();
    }
  }

  private failure(error: unknown): ApiError {
    if (error instanceof ApiError) return error;
    if (isTimeout(error)) return errors.upstream(504, `The upstream engine for this specialist timed out (${(error as Error).message}).`);
    return errors.upstream(502, `The upstream engine for this specialist failed: ${(error as Error).message}`);
  }

  private async upstreamStatus(response: Dispatcher.ResponseData): Promise<ApiError> {
    const text = await response.body.text().catch(() => "");
    let message = text.slice(0, 500);
    try {
      const parsed = JSON.parse(text) as UpstreamBody;
      const e = parsed.error;
      message = typeof e === "string" ? e : (e?.message ?? message);
    } catch {
      // Not JSON: keep the raw text.
    }
    const status = response.statusCode;
    if (status === 400) return errors.invalidParameter("messages", `the upstream engine refused the request: ${message}`);
    if (status === 429 || status === 503) return errors.upstream(503, `The upstream engine is overloaded (HTTP ${status}): ${message}`);
    return errors.upstream(502, `The upstream engine answered HTTP ${status}: ${message}`);
  }

  private async readWhole(response: Dispatcher.ResponseData): Promise<GenerationResult> {
    const parsed = (await response.body.json()) as UpstreamBody;
    const choice = parsed.choices?.[0];
    if (choice === undefined) throw errors.upstream(502, "The upstream engine answered without choices.");
    return {
      text: choice.message?.content ?? "",
      promptTokens: parsed.usage?.prompt_tokens ?? 0,
      completionTokens: parsed.usage?.completion_tokens ?? 0,
      finishReason: finishReason(choice.finish_reason),
      aborted: false,
    };
  }

  private async readStream(response: Dispatcher.ResponseData, req: GenerationRequest): Promise<GenerationResult> {
    let text = "";
    let chunks = 0;
    let finish: string | null | undefined;
    let usage: UpstreamBody["usage"];
    let done = false;
    for await (const data of readSseData(response.body)) {
      if (data === "[DONE]") {
        done = true;
        break;
      }
      const chunk = JSON.parse(data) as UpstreamBody;
      if (chunk.error !== undefined) throw errors.upstream(502, `The upstream engine failed mid-stream: ${JSON.stringify(chunk.error)}`);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content;
      if (delta) {
        text += delta;
        chunks++;
        req.onText?.(delta);
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (req.signal.aborted) {
        response.body.destroy();
        return { text, promptTokens: usage?.prompt_tokens ?? 0, completionTokens: chunks, finishReason: "stop", aborted: true };
      }
    }
    if (!done && finish === undefined) throw errors.upstream(502, "The upstream engine closed the stream before it finished.");
    return {
      text,
      promptTokens: usage?.prompt_tokens ?? 0,
      // Without a usage chunk, each content delta is one token in practice.
      completionTokens: usage?.completion_tokens ?? chunks,
      finishReason: finishReason(finish),
      aborted: false,
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
