import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { engineOn } from "./helpers/remote-engine.js";
import { RequestAbort } from "../src/server/request-context.js";
import type { ApiError } from "../src/errors.js";
import type { GenerationRequest } from "../src/engines/types.js";
import type { ToolCallDelta } from "../src/engines/tools.js";
import { ScriptedApi, type Script } from "./helpers/scripted-api.js";

/**
 * How the remote engine reads what an upstream sends: tool-call pieces in the orders servers send them, token counts
 * no request could hold, usage reported early, and failures named by the SSE event.
 */

/** A scripted upstream: health checks answered, every completion as `answer` says; `url` is its base URL (…/v1). */
async function upstream(answer: Script): Promise<{ url: string; completions: () => number; close: () => Promise<void> }> {
  const api = new ScriptedApi();
  api.script = (req, res, seen) => {
    if (req.method === "GET") return void res.writeHead(200, { "content-type": "application/json" }).end('{"data":[]}');
    answer(req, res, seen);
  };
  const url = `${await api.start()}/v1`;
  return { url, completions: () => api.requests.filter((r) => r.method === "POST").length, close: () => api.stop() };
}

/** Every completion answered with `body` (SSE text, or a JSON answer), then ended unless `hold`. */
const upstreamSending = (body: string, hold = false) =>
  upstream((_req, res) => {
    res.writeHead(200, { "content-type": body.startsWith("{") ? "application/json" : "text/event-stream" });
    if (hold) res.write(body);
    else res.end(body);
  });

const sse = (events: readonly object[], done = true): string =>
  events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("") + (done ? "data: [DONE]\n\n" : "");
const piece = (delta: object, finish: string | null = null) => ({ choices: [{ index: 0, delta, finish_reason: finish }] });
const toolPiece = (call: object) => piece({ tool_calls: [call] });
const TOOLS = { tools: [{ name: "get_weather", parameters: { type: "object" } }], choice: "auto" as const, parallel: false };

async function generate(body: string, extra: Partial<GenerationRequest> = {}, hold = false) {
  const sending = await upstreamSending(body, hold);
  const engine = engineOn(sending.url);
  const abort = new RequestAbort();
  const deltas: ToolCallDelta[] = [];
  let texts = 0;
  const request: GenerationRequest = {
    messages: [{ role: "user", content: "What is the weather in Oslo?" }],
    maxTokens: 50,
    temperature: 0,
    topP: 1,
    stop: [],
    constraint: { type: "text" },
    onText: () => void texts++,
    onToolCall: (delta) => void deltas.push(delta),
    ...extra,
    get signal() {
      return abort.signal;
    },
    abortWatch: abort,
  };
  try {
    const settled = engine.generate(request).then(
      (result) => ({ result, error: undefined }),
      (error: unknown) => ({ result: undefined, error: error as ApiError }),
    );
    if (hold) {
      while (texts < 3) await new Promise((resolve) => setTimeout(resolve, 10));
      abort.abort(new Error("client disconnected"));
    }
    return { ...(await settled), deltas };
  } finally {
    await engine.close();
    await sending.close();
  }
}

/** The call as the `openai` SDKs put streamed deltas together: Python joins names, Node keeps the last one given. */
function asClientsRead(deltas: readonly ToolCallDelta[]) {
  const named = deltas.filter((d) => d.name !== undefined);
  return {
    joined: named.map((d) => d.name).join(""),
    last: named.at(-1)?.name,
    id: deltas.find((d) => d.id !== undefined)?.id,
    arguments: deltas.map((d) => d.arguments).join(""),
  };
}

describe("remote engine: a streamed tool call's name and id, however the upstream sends them", () => {
  for (const [name, events, id] of [
    [
      "the name after an id-only first piece",
      [
        toolPiece({ index: 0, id: "call_A", type: "function", function: { arguments: "" } }),
        toolPiece({ index: 0, function: { name: "get_weather" } }),
        toolPiece({ index: 0, function: { arguments: '{"city":' } }),
        toolPiece({ index: 0, function: { arguments: '"Oslo"}' } }),
      ],
      "call_A",
    ],
    [
      "the name in two pieces",
      [
        toolPiece({ index: 0, id: "call_A", function: { name: "get_", arguments: "" } }),
        toolPiece({ index: 0, function: { name: "weather" } }),
        toolPiece({ index: 0, function: { arguments: '{"city":"Oslo"}' } }),
      ],
      "call_A",
    ],
    [
      "the arguments before the id and the name",
      [toolPiece({ index: 0, function: { arguments: '{"city":"Oslo"}' } }), toolPiece({ index: 0, id: "call_A", function: { name: "get_weather" } })],
      "call_A",
    ],
    [
      "the name so far repeated, growing",
      [
        toolPiece({ index: 0, id: "call_A", function: { name: "get" } }),
        toolPiece({ index: 0, function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }),
      ],
      "call_A",
    ],
    [
      "no index, and the id after the name",
      [toolPiece({ function: { name: "get_weather" } }), toolPiece({ id: "call_A", function: { arguments: '{"city":"Oslo"}' } })],
      "call_A",
    ],
    [
      "the whole name repeated in every piece",
      [
        toolPiece({ index: 0, id: "call_A", function: { name: "get_weather", arguments: '{"city":' } }),
        toolPiece({ index: 0, function: { name: "get_weather", arguments: '"Oslo"}' } }),
      ],
      "call_A",
    ],
  ] as const) {
    it(`sends the name once, whole: ${name}`, async () => {
      const { result, error, deltas } = await generate(sse([...events, piece({}, "tool_calls")]), { tools: TOOLS });
      assert.equal(error, undefined);
      const read = asClientsRead(deltas);
      assert.equal(read.joined, "get_weather", JSON.stringify(deltas));
      assert.equal(read.last, "get_weather");
      assert.equal(read.id, id);
      assert.equal(read.arguments, '{"city":"Oslo"}');
      assert.deepEqual(result?.toolCalls, [{ id, name: "get_weather", arguments: '{"city":"Oslo"}' }]);
      assert.equal(result?.finishReason, "tool_calls");
    });
  }

  it("sends calls in their order: one held is released when the next begins", async () => {
    const events = [
      toolPiece({ index: 0, id: "call_A", function: { name: "get_weather" } }),
      toolPiece({ index: 1, id: "call_B", function: { name: "get_weather", arguments: '{"city":"Bergen"}' } }),
    ];
    const { deltas } = await generate(sse([...events, piece({}, "tool_calls")]), { tools: TOOLS });
    assert.deepEqual(
      deltas.map((d) => [d.index, d.id]),
      [
        [0, "call_A"],
        [1, "call_B"],
      ],
    );
  });
});

describe("remote engine: an upstream's token counts, within what the request could hold", () => {
  const HUGE = Number.MAX_SAFE_INTEGER;
  for (const stream of [true, false]) {
    it(`meters at most max_tokens and a token per byte of the prompt (${stream ? "streamed" : "whole"})`, async () => {
      const usage = { prompt_tokens: HUGE, completion_tokens: HUGE, total_tokens: HUGE, prompt_tokens_details: { cached_tokens: HUGE } };
      const body = stream
        ? sse([piece({ content: "sunny" }, "stop"), { choices: [], usage }])
        : JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: "sunny" }, finish_reason: "stop" }], usage });
      const { result } = await generate(body, stream ? {} : { onText: undefined });
      assert.equal(result?.completionTokens, 50, "max_tokens");
      assert.ok(result!.promptTokens > 0 && result!.promptTokens < 10_000, `prompt tokens: ${result?.promptTokens}`);
      assert.ok((result!.cachedPromptTokens ?? 0) <= result!.promptTokens);
    });
  }

  it("takes an upstream's own counts as they are when the request could hold them", async () => {
    const usage = { prompt_tokens: 1234, completion_tokens: 7, total_tokens: 1241 };
    const { result } = await generate(sse([piece({ content: "sunny" }, "stop"), { choices: [], usage }]));
    assert.equal(result?.promptTokens, 1234);
    assert.equal(result?.completionTokens, 7);
  });

  it("meters at least a token per piece streamed when the upstream reported its usage early", async () => {
    const early = { choices: [], usage: { prompt_tokens: 11, completion_tokens: 0, total_tokens: 11 } };
    const pieces = ["a", "b", "c", "d", "e"].map((content) => piece({ content }));
    const { result } = await generate(sse([early, ...pieces, piece({}, "stop")]));
    assert.equal(result?.promptTokens, 11);
    assert.equal(result?.completionTokens, 5);
  });

  it("takes the upstream's count when it comes after the last piece, however finely the text was split", async () => {
    const pieces = [..."sunny and warm"].map((content) => piece({ content }));
    const usage = { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 };
    const { result } = await generate(sse([...pieces, piece({}, "stop"), { choices: [], usage }]));
    assert.equal(result?.completionTokens, 3);
  });

  it("meters a stream the client left for what it received, when the upstream reported 0 early", async () => {
    const early = { choices: [], usage: { prompt_tokens: 11, completion_tokens: 0, total_tokens: 11 } };
    const pieces = ["a", "b", "c"].map((content) => piece({ content }));
    const { result } = await generate(sse([early, ...pieces], false), {}, true);
    assert.equal(result?.aborted, true);
    assert.equal(result?.promptTokens, 11);
    assert.equal(result?.completionTokens, 3);
  });
});

describe("remote engine: a failure named by the stream's event", () => {
  it("ends the stream as failed, not as a finished answer", async () => {
    const body =
      sse([piece({ content: "partly" })], false) +
      'event: error\ndata: {"message":"overloaded mid-stream","type":"server_error"}\n\n' +
      sse([piece({}, "stop")]);
    const { result, error } = await generate(body);
    assert.equal(result, undefined, "not a finished answer");
    assert.equal(error?.status, 502);
    assert.match(error?.message ?? "", /failed mid-stream/);
  });

  it("ends it so with no words in the event's data too", async () => {
    const { result, error } = await generate(sse([piece({ content: "partly" })], false) + "event: error\ndata:\n\n" + sse([piece({}, "stop")]));
    assert.equal(result, undefined);
    assert.equal(error?.status, 502);
  });

  it("still reads events named otherwise (a keep-alive `event: ping`) as nothing", async () => {
    const body = "event: ping\ndata: {}\n\n" + sse([piece({ content: "fine" }, "stop")]);
    const { result, error } = await generate(body);
    assert.equal(error, undefined);
    assert.equal(result?.text, "fine");
  });
});

describe("remote engine: an answer with no body to read", () => {
  /** Every completion answered with `status` (and a Location for a redirect). */
  const answering = (status: number) =>
    upstream((_req, res) => {
      res.writeHead(status, status >= 300 && status < 400 ? { location: "https://llm.internal/v1/chat/completions" } : {}).end();
    });

  for (const status of [301, 302, 307, 204]) {
    for (const stream of [false, true]) {
      it(`answers HTTP ${status} ${stream ? "to a stream" : "whole"} as the upstream's status, a redirect's target in the operator's words`, async () => {
        const answered = await answering(status);
        const engine = engineOn(answered.url);
        const abort = new RequestAbort();
        try {
          const error = (await engine
            .generate({
              messages: [{ role: "user", content: "hi" }],
              maxTokens: 5,
              temperature: 0,
              topP: 1,
              stop: [],
              constraint: { type: "text" },
              ...(stream ? { onText: () => undefined } : {}),
              signal: abort.signal,
              abortWatch: abort,
            })
            .then(
              () => undefined,
              (e: unknown) => e,
            )) as ApiError;
          assert.equal(error.status, 502);
          assert.equal(error.message, `The upstream engine answered HTTP ${status}.`);
          const words = String((error.cause as Error | undefined)?.message);
          if (status !== 204) assert.match(words, /it redirects to https:\/\/llm\.internal\/v1\/chat\/completions, which is not followed/);
          assert.equal(answered.completions(), 1, "not followed, not sent again");
        } finally {
          await engine.close();
          await answered.close();
        }
      });
    }
  }
});
