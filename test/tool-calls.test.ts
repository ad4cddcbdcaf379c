import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam,
  ChatCompletionMessageToolCall,
  ChatCompletionTool,
} from "openai/resources/chat/completions";
import { createKey, postJson, startTestServer, tinyModel, type TestServer } from "./helpers/fixtures.js";

/** A bounded schema: every valid call is short, so a random model at temperature 2 always finishes it. */
const WEATHER: ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", enum: ["Paris", "Rome", "Oslo"] },
        unit: { type: "string", enum: ["c", "f"] },
        note: { type: "string", maxLength: 6 },
      },
      required: ["city", "unit", "note"],
      additionalProperties: false,
    },
  },
};
const TIME: ChatCompletionTool = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", enum: ["utc", "cet"] } }, required: ["zone"] } },
};

function assertValidWeather(args: string): void {
  const value = JSON.parse(args) as Record<string, unknown>;
  assert.deepEqual(Object.keys(value).sort(), ["city", "note", "unit"]);
  assert.ok(["Paris", "Rome", "Oslo"].includes(value.city as string), args);
  assert.ok(["c", "f"].includes(value.unit as string), args);
  // maxLength counts characters (code points), as JSON Schema does: one outside the BMP is two UTF-16 units.
  assert.ok(typeof value.note === "string" && [...value.note].length <= 6, args);
}

function assertValidCall(name: string, args: string): void {
  if (name === "get_weather") return assertValidWeather(args);
  assert.equal(name, "get_time");
  const value = JSON.parse(args) as Record<string, unknown>;
  assert.deepEqual(Object.keys(value), ["zone"]);
  assert.ok(["utc", "cet"].includes(value.zone as string), args);
}

function argumentsOf(call: ChatCompletionMessageToolCall): string {
  assert.equal(call.type, "function");
  return call.type === "function" ? call.function.arguments : "";
}

const ASK: ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
const SAMPLES = 6;

type Alternative = { token: string; logprob: number; bytes: number[] | null };
type Entry = Alternative & { top_logprobs: Alternative[] };
/**
 * The same tokens with as many alternatives; log-probabilities within 1e-3, since llama.cpp's CPU kernels may
 * round the last digits differently when a prompt's prefix comes from the cache in other batch sizes.
 */
function assertSameEntries(actual: Entry[], expected: Entry[], what: string): void {
  assert.deepEqual(
    actual.map((e) => [e.token, e.top_logprobs.length]),
    expected.map((e) => [e.token, e.top_logprobs.length]),
    what,
  );
  const close = (a: number, b: number, where: string): void => assert.ok(Math.abs(a - b) < 1e-3, `${what}: ${where}: ${a} vs ${b}`);
  actual.forEach((entry, i) => {
    const other = expected[i]!;
    close(entry.logprob, other.logprob, `entry ${i}`);
    // Two nearly tied alternatives may swap places: compared by their bytes (pieces of one character all read "�").
    const key = (t: Alternative): string => JSON.stringify(t.bytes);
    for (const t of entry.top_logprobs) {
      const same = other.top_logprobs.find((o) => key(o) === key(t));
      if (same !== undefined) close(t.logprob, same.logprob, `entry ${i}, alternative ${JSON.stringify(t.token)}`);
    }
  });
}

/**
 * Streams calls with log-probabilities under "required" and "auto": the streamed entries, in order, are the whole
 * response's, and only chunks carrying tool-call pieces carry them when the answer is a call.
 */
async function assertStreamedCallLogprobs(client: OpenAI, model: string): Promise<void> {
  let called = 0;
  for (let seed = 0; seed < SAMPLES; seed++) {
    const request = {
      model,
      messages: ASK,
      tools: [WEATHER, TIME],
      tool_choice: seed % 2 === 0 ? ("required" as const) : ("auto" as const),
      temperature: 2,
      seed,
      max_tokens: 400,
      logprobs: true,
      top_logprobs: 2,
    };
    // The first answer to a prompt evaluates all of it; later ones reuse its cached prefix, whose floats differ in
    // the last digits (about 1e-4): the whole answer compared is one of those, as the stream's is.
    await client.chat.completions.create(request);
    const whole: ChatCompletion = await client.chat.completions.create(request);
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) chunks.push(chunk);
    const streamed = chunks.flatMap((c) => c.choices.flatMap((ch) => (ch.finish_reason === null ? (ch.logprobs?.content ?? []) : [])));
    const expected = whole.choices[0]!.logprobs!.content!;
    assert.ok(expected.length > 0, "the whole response has entries");
    assertSameEntries(streamed, expected, `seed ${seed}`);
    const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    const calls = whole.choices[0]!.message.tool_calls ?? [];
    assert.equal(deltas.length > 0, calls.length > 0, `seed ${seed}: the stream calls when the whole response does`);
    if (calls.length === 0) continue;
    called++;
    // The entries ride on the tool-call chunks themselves: no chunk carries them with an empty content delta.
    for (const chunk of chunks) {
      const choice = chunk.choices[0];
      if (choice === undefined || (choice.logprobs?.content ?? []).length === 0) continue;
      assert.ok(choice.delta.tool_calls !== undefined, `seed ${seed}: entries on a chunk without a tool call: ${JSON.stringify(choice.delta)}`);
    }
    assert.equal(deltas.map((d) => d.function?.arguments ?? "").join(""), calls.map((c) => argumentsOf(c)).join(""));
  }
  assert.ok(called >= SAMPLES / 2, `${called} of ${SAMPLES} answers called a tool`);
}

describe("tool calling through the official openai package", () => {
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  it("answers a required call whose arguments validate for every sample at temperature 2.0", async () => {
    for (let seed = 0; seed < SAMPLES; seed++) {
      const completion: ChatCompletion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools: [WEATHER, TIME],
        tool_choice: "required",
        parallel_tool_calls: false,
        temperature: 2,
        seed,
        max_tokens: 400,
      });
      const choice: ChatCompletion.Choice = completion.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.content, null);
      const calls = choice.message.tool_calls!;
      assert.equal(calls.length, 1);
      const call = calls[0]!;
      assert.equal(call.type, "function");
      assert.match(call.id, /^call_/);
      if (call.type !== "function") continue;
      assertValidCall(call.function.name, call.function.arguments);
    }
  });

  it("calls the named function when tool_choice names one, streamed in OpenAI's delta shape", async () => {
    for (let seed = 0; seed < SAMPLES; seed++) {
      const stream: AsyncIterable<ChatCompletionChunk> = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools: [TIME, WEATHER],
        tool_choice: { type: "function", function: { name: "get_weather" } },
        temperature: 2,
        seed,
        max_tokens: 400,
        stream: true,
      });
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
      assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
      assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, "tool_calls");
      assert.ok(chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null));
      // First piece of each call: index, id, type, name and empty arguments; then arguments only.
      const firstPiece = deltas[0]!;
      assert.equal(firstPiece.index, 0);
      assert.match(firstPiece.id!, /^call_/);
      assert.equal(firstPiece.type, "function");
      assert.equal(firstPiece.function!.name, "get_weather");
      assert.ok(deltas.slice(1).every((d) => d.id === undefined && d.function!.name === undefined));
      const indexes = new Set(deltas.map((d) => d.index));
      for (const index of indexes) {
        const args = deltas
          .filter((d) => d.index === index)
          .map((d) => d.function!.arguments ?? "")
          .join("");
        assertValidWeather(args);
      }
      assert.ok(chunks.every((c) => c.choices.every((ch) => ch.delta.content === undefined || ch.delta.content === null || ch.delta.content === "")));
    }
  });

  it("calls only the tools OpenAI's allowed_tools choice lists, under its mode", async () => {
    for (let seed = 0; seed < SAMPLES; seed++) {
      const completion: ChatCompletion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools: [TIME, WEATHER],
        tool_choice: { type: "allowed_tools", allowed_tools: { mode: "required", tools: [{ type: "function", function: { name: "get_time" } }] } },
        temperature: 2,
        seed,
        max_tokens: 400,
      });
      const choice = completion.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls");
      const calls = choice.message.tool_calls ?? [];
      assert.ok(calls.length >= 1);
      for (const call of calls) {
        assert.equal(call.type === "function" ? call.function.name : call.type, "get_time");
        assertValidCall("get_time", argumentsOf(call));
      }
    }
    const refused = async (tool_choice: unknown) => {
      const r = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages: ASK, tools: [TIME, WEATHER], tool_choice });
      const error = r.json.error as { code: string; param: string };
      return [r.status, error?.code, error?.param];
    };
    const allowed = (mode: string, names: string[]) => ({
      type: "allowed_tools",
      allowed_tools: { mode, tools: names.map((name) => ({ type: "function", function: { name } })) },
    });
    assert.deepEqual(await refused(allowed("required", ["get_time", "nope"])), [
      400,
      "invalid_parameter",
      "tool_choice.allowed_tools.tools[1].function.name",
    ]);
    assert.deepEqual(await refused(allowed("sometimes", ["get_time"])), [400, "invalid_parameter", "tool_choice"]);
    assert.deepEqual(await refused(allowed("auto", [])), [400, "invalid_parameter", "tool_choice"]);
  });

  it("streams a call's log-probabilities on its tool-call chunks: together the same entries as the whole response", async () => {
    await assertStreamedCallLogprobs(client, "alveare-chat");
  });

  it("lets the model answer or call under auto, and any call it makes validates", async () => {
    for (let seed = 0; seed < SAMPLES; seed++) {
      const completion: ChatCompletion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools: [WEATHER],
        temperature: 2,
        seed,
        max_tokens: 200,
      });
      const choice: ChatCompletion.Choice = completion.choices[0]!;
      if (choice.message.tool_calls !== undefined && choice.finish_reason === "tool_calls") {
        for (const call of choice.message.tool_calls) if (call.type === "function") assertValidWeather(call.function.arguments);
      } else {
        assert.equal(typeof choice.message.content, "string");
        assert.ok(!choice.message.content!.startsWith("||call:"));
      }
    }
  });

  it("never cuts a call at a stop string: under required the call is whole and its arguments parse, streamed or not", async () => {
    for (const stop of ['"', "||", "call", ["{", "}"]] as Array<string | string[]>) {
      const ask: ChatCompletionCreateParamsNonStreaming = {
        model: "alveare-chat",
        messages: ASK,
        tools: [WEATHER, TIME],
        tool_choice: "required",
        temperature: 0,
        max_tokens: 80,
        stop,
      };
      const whole = await client.chat.completions.create(ask);
      const choice = whole.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls", `stop ${JSON.stringify(stop)}`);
      const call = choice.message.tool_calls![0]!;
      assert.equal(call.type, "function");
      if (call.type === "function") assertValidCall(call.function.name, call.function.arguments);
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of await client.chat.completions.create({ ...ask, stream: true })) chunks.push(chunk);
      const streamed = chunks
        .flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []))
        .map((d) => d.function?.arguments ?? "")
        .join("");
      assert.equal(streamed, argumentsOf(call));
      assert.equal(chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter(Boolean)[0], "tool_calls");
    }
  });

  it("holds maxLength in characters of the text: the answer's bytes stay valid UTF-8 (whole, and with log-probabilities)", async () => {
    const short: ChatCompletionTool = {
      type: "function",
      function: {
        name: "f",
        parameters: { type: "object", properties: { s: { type: "string", maxLength: 6 } }, required: ["s"], additionalProperties: false },
      },
    };
    for (let seed = 0; seed < 24; seed++) {
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools: [short],
        tool_choice: "required",
        temperature: 1.5,
        seed,
        max_tokens: 60,
        ...(seed % 3 === 0 ? { logprobs: true } : {}),
      });
      const args = argumentsOf(completion.choices[0]!.message.tool_calls![0]!);
      const value = (JSON.parse(args) as { s: string }).s;
      // A lenient grammar counted a broken lead byte and the bytes after it as one character: 12 came out of 6.
      assert.ok([...value].length <= 6, `seed ${seed}: ${JSON.stringify(value)}`);
      assert.ok(!value.includes("\uFFFD"), `seed ${seed}: no broken character in ${JSON.stringify(value)}`);
    }
    const extract = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-extract",
      messages: [{ role: "user", content: "Invoice from ACME, total 12 EUR" }],
      temperature: 1.5,
      seed: 6,
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "v",
          strict: true,
          schema: { type: "object", properties: { vendor: { type: "string", maxLength: 10 } }, required: ["vendor"], additionalProperties: false },
        },
      },
    });
    assert.equal(extract.status, 200, JSON.stringify(extract.json));
    const content = (extract.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
    assert.ok([...(JSON.parse(content) as { vendor: string }).vendor].length <= 10, content);
  });

  it("reports finish_reason length on a call cut by max_tokens, keeping the cut arguments", async () => {
    const ask = { model: "alveare-chat", messages: ASK, tools: [WEATHER], tool_choice: "required" as const, temperature: 1.5, seed: 5 };
    const whole = await client.chat.completions.create({ ...ask, max_tokens: 400 });
    assert.equal(whole.choices[0]!.finish_reason, "tool_calls");
    const full = argumentsOf(whole.choices[0]!.message.tool_calls![0]!);
    // The same seed samples the same tokens: cut three tokens before the end, inside the arguments.
    const cutAt = whole.usage!.completion_tokens - 3;
    const cut = await client.chat.completions.create({ ...ask, max_tokens: cutAt });
    const choice = cut.choices[0]!;
    assert.equal(choice.finish_reason, "length");
    assert.equal(cut.usage!.completion_tokens, cutAt);
    const partial = argumentsOf(choice.message.tool_calls![0]!);
    assert.ok(full.startsWith(partial) && partial.length < full.length, `${partial} / ${full}`);
    assert.throws(() => JSON.parse(partial));
  });

  it("completes a round trip: call, tool result, answer", async () => {
    const first = await client.chat.completions.create({
      model: "alveare-chat",
      messages: ASK,
      tools: [WEATHER],
      tool_choice: "required",
      temperature: 0.8,
      seed: 11,
      max_tokens: 400,
    });
    const call = first.choices[0]!.message.tool_calls![0]!;
    const history: ChatCompletionMessageParam[] = [
      ...ASK,
      first.choices[0]!.message,
      { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21, sky: "clear" }) },
    ];
    const answer = await client.chat.completions.create({
      model: "alveare-chat",
      messages: history,
      tools: [WEATHER],
      tool_choice: "none",
      max_tokens: 16,
      seed: 1,
    });
    const choice = answer.choices[0]!;
    assert.ok(choice.finish_reason === "stop" || choice.finish_reason === "length");
    assert.equal(typeof choice.message.content, "string");
    assert.equal(choice.message.tool_calls, undefined);
    // The call and its result are in the prompt: more tokens than the question alone.
    const alone = await client.chat.completions.create({ model: "alveare-chat", messages: ASK, max_tokens: 1 });
    assert.ok(answer.usage!.prompt_tokens > alone.usage!.prompt_tokens + 10);
    // And the model may call again after a result, under auto.
    const again = await client.chat.completions.create({
      model: "alveare-chat",
      messages: history,
      tools: [WEATHER],
      tool_choice: "required",
      max_tokens: 400,
      seed: 2,
      temperature: 2,
    });
    assertValidWeather(argumentsOf(again.choices[0]!.message.tool_calls![0]!));
  });

  it("shows the model its tools under tool_choice none, as OpenAI does, and answers in text: whole, streamed and with n", async () => {
    const ask = { model: "alveare-chat", messages: ASK, max_tokens: 1, temperature: 0 };
    const none = await client.chat.completions.create({ ...ask, tools: [WEATHER, TIME], tool_choice: "none" });
    const auto = await client.chat.completions.create({ ...ask, tools: [WEATHER, TIME], tool_choice: "auto" });
    const bare = await client.chat.completions.create(ask);
    // The prompt is the one a callable request has: the tools are documented in it, hundreds of tokens.
    assert.equal(none.usage!.prompt_tokens, auto.usage!.prompt_tokens);
    assert.ok(none.usage!.prompt_tokens > bare.usage!.prompt_tokens + 100, `${none.usage!.prompt_tokens} vs ${bare.usage!.prompt_tokens}`);
    for (let seed = 0; seed < SAMPLES; seed++) {
      const answer: ChatCompletion = await client.chat.completions.create({
        ...ask,
        tools: [WEATHER],
        tool_choice: "none",
        max_tokens: 12,
        temperature: 2,
        seed,
        n: 2,
      });
      assert.equal(answer.choices.length, 2);
      for (const choice of answer.choices) {
        assert.ok(choice.finish_reason === "stop" || choice.finish_reason === "length", choice.finish_reason);
        assert.equal(typeof choice.message.content, "string");
        assert.equal(choice.message.tool_calls, undefined);
      }
    }
    const chunks: ChatCompletionChunk[] = [];
    const stream = await client.chat.completions.create({ ...ask, tools: [WEATHER], tool_choice: "none", max_tokens: 8, stream: true });
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.every((c) => c.choices.every((ch) => ch.delta.tool_calls === undefined)));
    assert.ok(["stop", "length"].includes(chunks.at(-1)!.choices[0]!.finish_reason ?? ""));
    // The specialist's or the caller's output constraint holds, as without tools.
    const json = await client.chat.completions.create({
      ...ask,
      tools: [WEATHER],
      tool_choice: "none",
      max_tokens: 60,
      response_format: {
        type: "json_schema",
        json_schema: { name: "yes", strict: true, schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } },
      },
    });
    assert.equal(typeof (JSON.parse(json.choices[0]!.message.content!) as { ok: unknown }).ok, "boolean");
  });

  it("calls a function whose parameters are {} (no arguments) or properties without a type", async () => {
    const tools: ChatCompletionTool[] = [
      { type: "function", function: { name: "ping", parameters: {} } },
      { type: "function", function: { name: "pick", parameters: { properties: { n: { type: "integer" } }, required: ["n"] } } },
    ];
    for (const [name, check] of [
      ["ping", (args: Record<string, unknown>) => assert.deepEqual(args, {})],
      ["pick", (args: Record<string, unknown>) => assert.ok(Number.isInteger(args.n) && Object.keys(args).length === 1)],
    ] as const) {
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: ASK,
        tools,
        tool_choice: { type: "function", function: { name } },
        temperature: 2,
        seed: 1,
        max_tokens: 40,
      });
      const call = completion.choices[0]!.message.tool_calls![0]!;
      assert.equal(call.type === "function" ? call.function.name : "", name);
      check(JSON.parse(argumentsOf(call)) as Record<string, unknown>);
    }
  });

  it("replays an assistant's refusal in the history", async () => {
    const messages = [
      { role: "user", content: "x" },
      { role: "assistant", content: [{ type: "refusal", refusal: "I can't help with that." }] },
      { role: "user", content: "y" },
      { role: "assistant", content: null, refusal: "No." },
      { role: "user", content: "z" },
    ];
    const r = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages, max_tokens: 3 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });

  it("answers 400s that name the parameter", async () => {
    const refusal = async (extra: Record<string, unknown>, messages: unknown = ASK): Promise<[number, unknown, unknown]> => {
      const r = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages, ...extra });
      const error = r.json.error as { code: string; param: string };
      return [r.status, error?.code, error?.param];
    };
    const bad = (parameters: unknown) => ({ tools: [{ type: "function", function: { name: "f", parameters } }] });
    assert.deepEqual(await refusal({ tool_choice: "auto" }), [400, "invalid_parameter", "tool_choice"]);
    assert.deepEqual(await refusal({ parallel_tool_calls: true }), [400, "invalid_parameter", "parallel_tool_calls"]);
    assert.deepEqual(await refusal({ tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } }), [
      400,
      "invalid_parameter",
      "tool_choice",
    ]);
    assert.deepEqual(await refusal({ tools: [WEATHER], tool_choice: "sometimes" }), [400, "invalid_parameter", "tool_choice"]);
    assert.deepEqual(await refusal({ tools: [] }), [400, "invalid_parameter", "tools"]);
    assert.deepEqual(await refusal({ tools: [WEATHER, WEATHER] }), [400, "invalid_parameter", "tools[1].function.name"]);
    assert.deepEqual(await refusal({ tools: [{ type: "function", function: { name: "has space" } }] }), [
      400,
      "invalid_parameter",
      "tools[0].function.name",
    ]);
    assert.deepEqual(await refusal({ tools: [{ type: "retrieval" }] }), [400, "invalid_parameter", "tools[0]"]);
    assert.deepEqual(await refusal(bad({ type: "string" })), [400, "invalid_parameter", "tools[0].function.parameters"]);
    // A schema the grammar cannot hold is refused also when the tools are only shown: node-llama-cpp, documenting
    // them, would throw (a 500).
    assert.deepEqual(await refusal({ ...bad({ type: "object", properties: { a: { type: "string", maxLength: 2500 } } }), tool_choice: "none" }), [
      400,
      "invalid_parameter",
      "tools[0].function.parameters",
    ]);
    assert.deepEqual(await refusal(bad({ type: "object", properties: { a: { type: "strnig" } } })), [
      400,
      "invalid_parameter",
      "tools[0].function.parameters",
    ]);
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 100; i++) deep = { type: "object", properties: { a: deep } };
    assert.deepEqual(await refusal(bad(deep)), [400, "invalid_parameter", "tools[0].function.parameters"]);
    assert.deepEqual(await refusal({ tools: [WEATHER], response_format: { type: "json_object" } }), [400, "invalid_parameter", "response_format"]);
    // History rules.
    assert.deepEqual(await refusal({}, [{ role: "tool", tool_call_id: "call_x", content: "1" }]), [
      400,
      "invalid_parameter",
      "messages[0].tool_call_id",
    ]);
    assert.deepEqual(await refusal({}, [{ role: "tool", content: "1" }]), [400, "missing_parameter", "messages[0].tool_call_id"]);
    assert.deepEqual(await refusal({}, [{ role: "user", content: null }]), [400, "missing_parameter", "messages[0].content"]);
    assert.deepEqual(
      await refusal({}, [{ role: "user", content: "x", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }]),
      [400, "invalid_parameter", "messages[0].tool_calls"],
    );
    // Every call answered before the next turn, or the end, as OpenAI requires: the model would read a call without its result.
    const calls = [0, 1].map((k) => ({ id: `call_${k}`, type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } }));
    const turn = { role: "assistant", content: null, tool_calls: calls };
    const answer = (k: number) => ({ role: "tool", tool_call_id: `call_${k}`, content: "sunny" });
    for (const messages of [
      [...ASK, turn],
      [...ASK, turn, answer(1)],
      [...ASK, turn, answer(0), { role: "user", content: "And?" }, answer(1)],
    ]) {
      assert.deepEqual(await refusal({ tools: [WEATHER] }, messages), [400, "invalid_parameter", "messages[1].tool_calls"]);
    }
    const answered = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-chat",
      max_tokens: 2,
      messages: [...ASK, turn, answer(1), answer(0), { role: "user", content: "And?" }],
    });
    assert.equal(answered.status, 200, JSON.stringify(answered.json));
  });
});

describe("tool calling through a remote specialist", () => {
  let upstream: TestServer;
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    // The upstream is a second real server on its own socket: tools pass through to it and back.
    upstream = await startTestServer();
    server = await startTestServer({
      specialists: {
        faraway: { description: "served by another node", system_prompt: "", remote: { base_url: `${upstream.url}/v1`, model: "alveare-chat" } },
      },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  it("passes tools, tool_choice and the tool history through, whole and streamed", async () => {
    const ask = {
      model: "alveare-faraway",
      messages: ASK,
      tools: [WEATHER],
      tool_choice: "required" as const,
      temperature: 2,
      seed: 4,
      max_tokens: 400,
    };
    const whole = await client.chat.completions.create(ask);
    const choice = whole.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    const call = choice.message.tool_calls![0]!;
    assertValidWeather(argumentsOf(call));

    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of await client.chat.completions.create({ ...ask, stream: true })) chunks.push(chunk);
    const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.match(deltas[0]!.id!, /^call_/);
    assert.equal(deltas[0]!.function!.name, "get_weather");
    assertValidWeather(deltas.map((d) => d.function!.arguments ?? "").join(""));
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, "tool_calls");

    const answer = await client.chat.completions.create({
      model: "alveare-faraway",
      max_tokens: 8,
      messages: [...ASK, choice.message, { role: "tool", tool_call_id: call.id, content: "sunny" }],
    });
    assert.equal(typeof answer.choices[0]!.message.content, "string");
  });

  it("relays the upstream's log-probabilities of a streamed call on its tool-call chunks", async () => {
    await assertStreamedCallLogprobs(client, "alveare-faraway");
  });
});

describe("tool calling under a token cap", () => {
  const CAP = 3000;
  let server: TestServer;
  before(async () => {
    server = await startTestServer(
      { plans: { metered: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", tokens_per_minute: CAP } } },
      { gated: true },
    );
  });
  after(async () => {
    await server.close();
  });

  it("reserves at least what a call really uses: the tools as the chat format documents them", async () => {
    // An array's item type is written out once per item it must have: a documentation far longer than the schema's JSON.
    const repeated: ChatCompletionTool = {
      type: "function",
      function: {
        name: "items",
        parameters: {
          type: "object",
          properties: {
            list: { type: "array", minItems: 9, items: { type: "object", properties: { a: { type: "string", description: "d".repeat(150) } } } },
          },
        },
      },
    };
    for (const [tools, choice] of [
      [[WEATHER, TIME], "required"],
      [[repeated], "required"],
      [[repeated], "none"],
    ] as const) {
      const fresh = (await createKey(server, "metered")).auth;
      const r = await postJson(
        `${server.url}/v1/chat/completions`,
        { model: "alveare-chat", messages: ASK, tools, tool_choice: choice, max_tokens: 1, temperature: 0 },
        fresh,
      );
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const reserved = CAP - Number(r.headers.get("x-ratelimit-remaining-tokens"));
      const usage = r.json.usage as { prompt_tokens: number; total_tokens: number };
      // The template documents the tools in hundreds of tokens: the messages' bound alone (~60) was far below.
      assert.ok(usage.prompt_tokens > 200, `the documented tools are in the prompt: ${usage.prompt_tokens}`);
      assert.ok(reserved >= usage.total_tokens, `reserved ${reserved} for a request that used ${usage.total_tokens}`);
    }
  });

  it("refuses with a 400 a call whose tools alone exceed the cap, instead of running past it", async () => {
    const long = {
      type: "function",
      function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", description: "d".repeat(2500) } } } },
    };
    const fresh = (await createKey(server, "metered")).auth;
    const r = await postJson(
      `${server.url}/v1/chat/completions`,
      { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 30, tools: [long], tool_choice: "required" },
      fresh,
    );
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.equal((r.json.error as { code: string }).code, "invalid_parameter");
    const usage = (await (await fetch(`${server.url}/v1/usage`, { headers: fresh })).json()) as { requests_used: number };
    assert.equal(usage.requests_used, 0, "nothing was admitted or metered");
  });
});

describe("tool calling in a chat format whose call syntax holds control tokens (Mistral's)", () => {
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    // Named as Mistral's models are, node-llama-cpp writes calls as `[TOOL_CALLS][{"name": …, "arguments": …}]`; the
    // vocabulary holds "[TOOL_CALLS]" as one control token, as Mistral's does, so the model may write it either way.
    const model = await tinyModel({ chatTemplate: false, name: "Mistral 7B Instruct v0.3", controlTokens: ["[TOOL_CALLS]"] });
    server = await startTestServer({ models: { base: model } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  const request = (seed: number): ChatCompletionCreateParamsNonStreaming => ({
    model: "alveare-chat",
    messages: ASK,
    tools: [WEATHER],
    tool_choice: "required",
    temperature: 1,
    seed,
    max_tokens: 400,
    logprobs: true,
  });

  it("answers a call, whole and streamed, also when the model writes [TOOL_CALLS] as its control token", async () => {
    let controlToken = 0;
    for (let seed = 0; seed < 12; seed++) {
      const whole = await client.chat.completions.create(request(seed));
      const choice = whole.choices[0]!;
      const entries = choice.logprobs!.content!;
      if (entries[0]!.token === "[TOOL_CALLS]" && entries[0]!.bytes === null) controlToken++;
      // Several calls in a section may run to max_tokens: then the last one is cut.
      assert.ok(choice.finish_reason === "tool_calls" || choice.finish_reason === "length", `seed ${seed}: ${choice.finish_reason}`);
      assert.equal(choice.message.content, null, `seed ${seed}: the call came back as text`);
      const calls = choice.message.tool_calls ?? [];
      assert.ok(calls.length > 0, `seed ${seed}`);
      for (const call of choice.finish_reason === "length" ? calls.slice(0, -1) : calls) assertValidWeather(argumentsOf(call));

      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of await client.chat.completions.create({ ...request(seed), stream: true })) chunks.push(chunk);
      const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
      assert.ok(deltas.length > 0, `seed ${seed}: the stream calls`);
      assert.equal(chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join(""), "", `seed ${seed}: no call as text`);
    }
    assert.ok(controlToken > 0, "some answers start with the control token (the rest spell it out)");
  });

  it("writes a single call in the format's own section when parallel_tool_calls is false", async () => {
    for (let seed = 0; seed < 4; seed++) {
      const whole = await client.chat.completions.create({ ...request(seed), parallel_tool_calls: false });
      const choice = whole.choices[0]!;
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.tool_calls!.length, 1);
      assertValidWeather(argumentsOf(choice.message.tool_calls![0]!));
      // The call syntax the model wrote, as its entries spell it: Mistral's, "[TOOL_CALLS][" first, one call, "]".
      const syntax = choice.logprobs!.content!.map((e) => e.token).join("");
      assert.ok(syntax.startsWith('[TOOL_CALLS][{"name": "get_weather", "arguments": '), `seed ${seed}: ${syntax}`);
      // The section ends with "]" and then the model's end-of-sequence token, never with its name spelt out ("]EOS").
      assert.ok(syntax.endsWith("}}]"), `seed ${seed}: ${syntax}`);
    }
  });
});
