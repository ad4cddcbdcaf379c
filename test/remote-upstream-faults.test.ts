import assert from "node:assert/strict";
import type { ServerResponse } from "node:http";
import { after, before, describe, it } from "node:test";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

/**
 * Upstreams that answer 200 with something other than a good OpenAI answer: every case ends in a well-formed
 * answer or a documented error, and is metered with honest token counts.
 */
describe("remote engine against a misbehaving upstream", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  before(async () => {
    const base = await fake.start();
    server = await startTestServer({
      specialists: { odd: { description: "a misbehaving upstream", system_prompt: "", remote: { base_url: base, model: "m" } } },
    });
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  const event = (body: unknown): string => `data: ${JSON.stringify(body)}\n\n`;
  const piece = (content: string | null, finish: string | null = null, extra: object = {}): string =>
    event({
      id: "u",
      object: "chat.completion.chunk",
      created: 1,
      model: "m",
      choices: [{ index: 0, delta: { content }, finish_reason: finish }],
      ...extra,
    });
  const sse = (res: ServerResponse, body: string): void => void res.writeHead(200, { "content-type": "text/event-stream" }).end(body);
  const json = (res: ServerResponse, body: unknown): void =>
    void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  const whole = (content: string, usage?: unknown): object => ({
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    ...(usage === undefined ? {} : { usage }),
  });

  const PROMPT = "How are you today?";
  /** A chat completion, whole or streamed; a stream's text is returned whole. */
  async function ask(stream: boolean, extra: object = {}): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "alveare-odd",
        messages: [{ role: "user", content: PROMPT }],
        stream,
        ...(stream ? { stream_options: { include_usage: true } } : {}),
        ...extra,
      }),
    });
    const text = await response.text();
    const isJson = (response.headers.get("content-type") ?? "").startsWith("application/json");
    return { status: response.status, json: isJson ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
  }
  /** The JSON events of a stream, [DONE] left out. */
  const eventsOf = (text: string): Array<Record<string, unknown>> =>
    text
      .split("\n\n")
      .filter((e) => e.startsWith("data: ") && e !== "data: [DONE]")
      .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
  /** The usage the client was told: the last stream event's, or the whole answer's. */
  const usageOf = (r: { json: Record<string, unknown>; text: string }) =>
    (r.json.usage ?? eventsOf(r.text).at(-1)?.usage) as { prompt_tokens: unknown; completion_tokens: unknown; total_tokens: unknown };
  /** The tokens the request was metered with, from its request log line. */
  const meteredOf = () => {
    const line = server.logs
      .records()
      .filter((r) => r.completion_tokens !== undefined)
      .at(-1)!;
    return { prompt: line.prompt_tokens, completion: line.completion_tokens };
  };
  const errorOf = (r: { json: Record<string, unknown> }) => (r.json.error as { message: string; code: string }) ?? {};

  it("answers a stream without choices with the 502 a whole answer without choices gets, not an empty 200", async () => {
    const streams = [
      event({ id: "u", object: "chat.completion.chunk", model: "m" }) + "data: [DONE]\n\n",
      event({ choices: [] }) + event({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 0 } }) + "data: [DONE]\n\n",
      "data: [DONE]\n\n",
    ];
    try {
      for (const body of streams) {
        fake.respond = (res, stream) => (stream ? sse(res, body) : json(res, { choices: [] }));
        const [w, s] = [await ask(false), await ask(true)];
        assert.equal(w.status, 502);
        assert.equal(s.status, 502, s.text);
        assert.deepEqual(s.json, w.json);
        assert.equal(errorOf(s).message, "The upstream engine answered without choices.");
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("meters an answer without usage with estimated tokens, whole and streamed, and warns once per upstream", async () => {
    const answer = "Very well, thank you for asking!"; // 32 bytes: 11 tokens at 3 bytes a token
    fake.respond = (res, stream) =>
      stream ? sse(res, piece("Very well, ") + piece("thank you for asking!") + piece(null, "stop") + "data: [DONE]\n\n") : json(res, whole(answer));
    try {
      // The prompt: 3 + 4 per message + its 18 bytes at 3 a token.
      const prompt = 3 + 4 + 6;
      for (const stream of [false, true]) {
        const r = await ask(stream);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(usageOf(r), { prompt_tokens: prompt, completion_tokens: 11, total_tokens: prompt + 11 }, `stream: ${stream}`);
        assert.deepEqual(meteredOf(), { prompt, completion: 11 }, "metered as the client was told");
      }
      const warnings = server.logs.records().filter((r) => String(r.msg).startsWith("upstream answered without token counts"));
      assert.equal(warnings.length, 1, "one warning for the upstream, not one per request");
      assert.equal(warnings[0]!.level, 40);
      assert.deepEqual(warnings[0]!.missing, ["prompt_tokens", "completion_tokens"]);
      // A count the upstream did send is kept; only the missing one is estimated.
      fake.respond = (res) => json(res, whole(answer, { prompt_tokens: 40 }));
      assert.deepEqual(usageOf(await ask(false)), { prompt_tokens: 40, completion_tokens: 11, total_tokens: 51 });
    } finally {
      fake.respond = undefined;
    }
  });

  it("passes on the upstream's usage.prompt_tokens_details.cached_tokens, whole and streamed, when it is a count the prompt holds", async () => {
    for (const [details, passed] of [
      [{ cached_tokens: 30 }, { cached_tokens: 30 }],
      [{ cached_tokens: 0 }, { cached_tokens: 0 }],
      [{ cached_tokens: 41 }, undefined], // more than the prompt
      [{ cached_tokens: "30" }, undefined],
      [{ cached_tokens: -1 }, undefined],
      [null, undefined],
    ] as const) {
      const usage = { prompt_tokens: 40, completion_tokens: 1, total_tokens: 41, prompt_tokens_details: details };
      fake.respond = (res, stream) => (stream ? sse(res, piece("ab", "stop", { usage }) + "data: [DONE]\n\n") : json(res, whole("ab", usage)));
      try {
        for (const stream of [false, true]) {
          const r = await ask(stream);
          assert.equal(r.status, 200, r.text);
          const told = usageOf(r) as { prompt_tokens_details?: unknown };
          assert.deepEqual(told.prompt_tokens_details, passed, `${JSON.stringify(details)}, stream: ${stream}`);
        }
      } finally {
        fake.respond = undefined;
      }
    }
  });

  it("takes only whole non-negative numbers as token counts: a string is not concatenated, a negative count credits nothing", async () => {
    for (const usage of [
      { prompt_tokens: "7", completion_tokens: "9" },
      { prompt_tokens: 1.5, completion_tokens: -3 },
      { prompt_tokens: null, completion_tokens: {} },
    ]) {
      fake.respond = (res, stream) => (stream ? sse(res, piece("ab", "stop", { usage }) + "data: [DONE]\n\n") : json(res, whole("ab", usage)));
      try {
        for (const stream of [false, true]) {
          const r = await ask(stream);
          assert.equal(r.status, 200, r.text);
          assert.deepEqual(usageOf(r), { prompt_tokens: 13, completion_tokens: 1, total_tokens: 14 }, JSON.stringify(usage));
          assert.deepEqual(meteredOf(), { prompt: 13, completion: 1 });
        }
      } finally {
        fake.respond = undefined;
      }
    }
  });

  it("answers JSON of the wrong shape with a 502 or an answer, never with the words of our own TypeError", async () => {
    const shapes: Array<[string, unknown]> = [
      ["null", null],
      ["a number", 42],
      ["a list", [1]],
      ["choices not a list", { choices: { a: 1 } }],
      ["a choice that is null", { choices: [null] }],
      ["tool_calls not a list", { choices: [{ index: 0, delta: { tool_calls: { a: 1 } }, message: { tool_calls: "x" }, finish_reason: "stop" }] }],
      [
        "tool calls that are null",
        { choices: [{ index: 0, delta: { tool_calls: [null] }, message: { tool_calls: [null] }, finish_reason: "stop" }] },
      ],
      [
        "log-probabilities not a list",
        {
          choices: [
            {
              index: 0,
              delta: { content: "a" },
              message: { content: "a" },
              logprobs: { content: [null, { top_logprobs: 3 }] },
              finish_reason: "stop",
            },
          ],
        },
      ],
    ];
    try {
      for (const [name, body] of shapes) {
        fake.respond = (res, stream) => (stream ? sse(res, event(body) + "data: [DONE]\n\n") : json(res, body));
        for (const stream of [false, true]) {
          const r = await ask(stream, { logprobs: true, top_logprobs: 1 });
          assert.ok(r.status === 200 || r.status === 502, `${name}: ${r.status}`);
          assert.doesNotMatch(r.text, /iterable|Cannot read|is not a function|undefined/, `${name} (stream: ${stream})`);
          if (r.status === 502) assert.equal(errorOf(r).code, "upstream_error");
        }
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("reads a tool call's index past any real one as left out, rather than sizing the calls by it", async () => {
    // Index 1e9 made every read of the calls walk a billion holes: tens of seconds of a blocked event loop.
    const call = (tool: object) => event({ choices: [{ index: 0, delta: { tool_calls: [tool] }, finish_reason: null }] });
    fake.respond = (res) =>
      sse(
        res,
        call({ index: 1e9, id: "call_a", type: "function", function: { name: "f", arguments: "" } }) +
          call({ index: -1, function: { arguments: '{"a":1}' } }) +
          event({ choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] }) +
          "data: [DONE]\n\n",
      );
    try {
      const r = await ask(true, { tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }] });
      assert.equal(r.status, 200, r.text);
      const deltas = eventsOf(r.text).flatMap((e) =>
        ((e.choices ?? []) as Array<{ delta: { tool_calls?: Array<{ index: number; id?: string; function?: { arguments?: string } }> } }>).flatMap(
          (c) => c.delta.tool_calls ?? [],
        ),
      );
      assert.deepEqual(
        deltas.map((d) => d.index),
        deltas.map(() => 0),
      );
      assert.equal(deltas.map((d) => d.function?.arguments ?? "").join(""), '{"a":1}');
    } finally {
      fake.respond = undefined;
    }
  });

  it("refuses an answer too large to hold, and a stream line that never ends, with a 502 (holding neither)", async () => {
    const MiB = 1024 * 1024;
    const endless = (res: ServerResponse, chunk: string, bytes: number): void => {
      let sent = 0;
      const write = (): void => {
        while (sent < bytes) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", write);
        }
        res.end();
      };
      write();
    };
    fake.respond = (res, stream) => {
      res.writeHead(200, { "content-type": stream ? "text/event-stream" : "application/json" });
      // A whole answer of 65 MiB; a stream whose first line runs 9 MiB.
      endless(res, stream ? "data: " + "x".repeat(MiB - 6) : "x".repeat(MiB), (stream ? 9 : 65) * MiB);
    };
    try {
      for (const stream of [false, true]) {
        const r = await ask(stream);
        assert.equal(r.status, 502);
        assert.match(errorOf(r).message, /^The upstream engine's answer was too large/);
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("skips SSE comments and keep-alive events without data, and reads events split at any byte", async () => {
    const body =
      ": keep-alive\n\n" +
      piece("héllo") +
      "event: ping\ndata:\n\n" +
      ":ping\r\n\r\n" +
      piece(" wörld", null, { error: null }) +
      piece(null, "length") +
      event({ choices: [], usage: { prompt_tokens: 4, completion_tokens: 2 } }) +
      "data: [DONE]\n\n";
    const bytes = Buffer.from(body);
    fake.respond = async (res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let i = 0; i < bytes.length; i += 3) {
        res.write(bytes.subarray(i, i + 3));
        await new Promise((resolve) => setImmediate(resolve));
      }
      res.end();
    };
    try {
      const r = await ask(true);
      assert.equal(r.status, 200, r.text);
      const events = eventsOf(r.text) as Array<{ choices: Array<{ delta: { content?: string }; finish_reason: string | null }> }>;
      assert.equal(events.map((e) => e.choices[0]?.delta.content ?? "").join(""), "héllo wörld");
      assert.deepEqual(
        events.flatMap((e) => e.choices.map((c) => c.finish_reason)).filter((f) => f !== null),
        ["length"],
      );
      assert.deepEqual(usageOf(r), { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    } finally {
      fake.respond = undefined;
    }
  });

  it("relays a whole JSON answer to a streamed request (a server that ignores stream) as a stream", async () => {
    const call = { id: "call_w", type: "function", function: { name: "f", arguments: '{"a":1}' } };
    fake.respond = (res) =>
      json(res, {
        choices: [{ index: 0, message: { role: "assistant", content: "Let me see.", tool_calls: [call] }, finish_reason: "tool_calls" }],
        usage: { prompt_tokens: 5, completion_tokens: 7 },
      });
    try {
      const r = await ask(true, { tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }] });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.text.endsWith("data: [DONE]\n\n"));
      type Delta = { content?: string; tool_calls?: Array<{ index: number; id?: string; function?: { arguments?: string } }> };
      const choices = eventsOf(r.text).flatMap((e) => e.choices as Array<{ delta: Delta; finish_reason: string | null }>);
      assert.equal(choices.map((c) => c.delta.content ?? "").join(""), "Let me see.");
      const pieces = choices.flatMap((c) => c.delta.tool_calls ?? []);
      assert.deepEqual([pieces[0]?.id, pieces.map((p) => p.function?.arguments ?? "").join("")], ["call_w", '{"a":1}']);
      assert.deepEqual(
        choices.map((c) => c.finish_reason).filter((f) => f !== null),
        ["tool_calls"],
      );
      assert.deepEqual(usageOf(r), { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    } finally {
      fake.respond = undefined;
    }
  });

  it("says what was wrong with an answer HTTP itself refuses in words, never as undici's or its parser's code", async () => {
    const broken: Array<[(res: ServerResponse) => void, string]> = [
      [
        (res) => void res.writeHead(200, { "content-type": "application/json", "x-big": "a".repeat(100_000) }).end("{}"),
        "its answer's headers were too large",
      ],
      [(res) => void res.socket!.end("HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n{}"), "a malformed HTTP answer"],
    ];
    try {
      for (const [answer, words] of broken) {
        fake.respond = (res) => answer(res);
        const r = await ask(false);
        assert.equal(r.status, 502, words);
        assert.equal(errorOf(r).message, `The upstream engine for this specialist failed (${words}).`);
        assert.doesNotMatch(r.text, /UND_ERR|HPE_/);
      }
    } finally {
      fake.respond = undefined;
    }
  });

  it("answers a 200 that holds an error object with a 502, the upstream's words in the log only", async () => {
    fake.respond = (res) => json(res, { error: { message: "model gpu-7 overloaded", type: "server_error" } });
    try {
      const r = await ask(false);
      assert.equal(r.status, 502);
      assert.equal(errorOf(r).message, "The upstream engine answered with an error.");
      assert.ok(!r.text.includes("gpu-7"));
      assert.ok(server.logs.lines.some((l) => l.includes("the upstream answered with an error") && l.includes("gpu-7")));
    } finally {
      fake.respond = undefined;
    }
  });
});

/**
 * The read timeout is idle time, so an upstream that keeps sending something (keep-alive comments, whitespace) would
 * hold a request for ever: answer_timeout_ms bounds the whole answer, and ends it as a timeout.
 */
describe("remote engine: the answer deadline", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  const ANSWER_TIMEOUT_MS = 1000;
  before(async () => {
    const base = await fake.start();
    server = await startTestServer({
      specialists: {
        dribble: {
          description: "an upstream that never finishes",
          system_prompt: "",
          remote: { base_url: base, model: "m", read_timeout_ms: 300, answer_timeout_ms: ANSWER_TIMEOUT_MS },
        },
      },
    });
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  /** Answers with `first`, then `every` each 100 ms (under the read timeout) until the connection closes, which `closed` tells. */
  function dribble(contentType: string, first: string, every: string): { closed: Promise<void> } {
    let closed!: () => void;
    const result = { closed: new Promise<void>((resolve) => (closed = resolve)) };
    fake.respond = (res) => {
      res.writeHead(200, { "content-type": contentType }).write(first);
      const timer = setInterval(() => res.write(every), 100);
      res.on("close", () => {
        clearInterval(timer);
        closed();
      });
    };
    return result;
  }
  async function ask(stream: boolean): Promise<{ status: number; text: string; ms: number }> {
    const started = performance.now();
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "alveare-dribble", messages: [{ role: "user", content: "hi" }], stream }),
    });
    const text = await response.text();
    return { status: response.status, text, ms: performance.now() - started };
  }
  /** Waits for the upstream's connection to close: a regression fails the test rather than hanging the suite. */
  const closedSoon = (closed: Promise<void>): Promise<void> =>
    Promise.race([
      closed,
      new Promise<void>((_, reject) => setTimeout(() => reject(new Error("the upstream's connection was left open")), 5_000).unref()),
    ]);
  const TIMED_OUT = `The upstream engine for this specialist timed out (its answer took over ${ANSWER_TIMEOUT_MS} ms in all).`;
  const within = (ms: number) => assert.ok(ms >= ANSWER_TIMEOUT_MS && ms < ANSWER_TIMEOUT_MS + 2_000, `ended after ${ms} ms`);
  const piece = (content: string | null, finish: string | null = null): string =>
    `data: ${JSON.stringify({ id: "u", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

  it("ends a whole answer whose bytes keep coming (whitespace) with a 504 once the deadline passes, and lets the upstream go", async () => {
    const upstream = dribble("application/json", "", " ");
    try {
      const r = await ask(false);
      assert.equal(r.status, 504, r.text);
      const error = (JSON.parse(r.text) as { error: { type: string; message: string } }).error;
      assert.equal(error.type, "server_error");
      assert.equal(error.message, TIMED_OUT);
      within(r.ms);
      await closedSoon(upstream.closed); // the upstream's connection is closed, not left sending
    } finally {
      fake.respond = undefined;
    }
  });

  it("answers a stream of keep-alives alone with the same 504 (nothing was relayed yet)", async () => {
    const upstream = dribble("text/event-stream", ": keep-alive\n\n", ": keep-alive\n\n");
    try {
      const r = await ask(true);
      assert.equal(r.status, 504, r.text);
      assert.equal((JSON.parse(r.text) as { error: { message: string } }).error.message, TIMED_OUT);
      within(r.ms);
      await closedSoon(upstream.closed);
    } finally {
      fake.respond = undefined;
    }
  });

  it("cuts a stream that went quiet after its first piece (keep-alives only) with an error event, and no [DONE]", async () => {
    const upstream = dribble("text/event-stream", piece("Hello"), ": keep-alive\n\n");
    try {
      const r = await ask(true);
      assert.equal(r.status, 200);
      within(r.ms);
      const events = r.text.split("\n\n").filter((e) => e.startsWith("data: "));
      assert.ok(
        events.some((e) => e.includes('"content":"Hello"')),
        "the piece before the silence was relayed",
      );
      const last = JSON.parse(events.at(-1)!.slice(6)) as { error: { type: string; message: string } };
      assert.equal(last.error.type, "server_error");
      assert.equal(last.error.message, TIMED_OUT);
      assert.ok(!r.text.includes("[DONE]"));
      await closedSoon(upstream.closed);
    } finally {
      fake.respond = undefined;
    }
  });

  it("leaves an answer alone that takes longer than the read timeout but finishes within the deadline", async () => {
    fake.respond = async (res, stream) => {
      const wait = () => new Promise((resolve) => setTimeout(resolve, 200));
      if (!stream) {
        res.writeHead(200, { "content-type": "application/json" }).write(" ");
        for (let i = 0; i < 3; i++) await wait().then(() => res.write(" "));
        res.end(JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: "done" }, finish_reason: "stop" }] }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (const word of ["one ", "two ", "three"]) {
        res.write(piece(word));
        await wait();
      }
      res.end(piece(null, "stop") + "data: [DONE]\n\n");
    };
    try {
      const [whole, streamed] = [await ask(false), await ask(true)];
      assert.equal(whole.status, 200, whole.text);
      assert.match(whole.text, /"content":"done"/);
      assert.equal(streamed.status, 200);
      assert.ok(streamed.text.includes("three") && streamed.text.includes("[DONE]"), streamed.text);
    } finally {
      fake.respond = undefined;
    }
  });
});
