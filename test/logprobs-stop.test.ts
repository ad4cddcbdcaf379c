import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { startTestServer, type TestServer } from "./helpers/fixtures.js";

type Entry = OpenAI.Chat.Completions.ChatCompletionTokenLogprob;

const REQUEST = {
  model: "alveare-chat",
  messages: [{ role: "user" as const, content: "Write a few words" }],
  max_tokens: 24,
  temperature: 0,
  logprobs: true,
  top_logprobs: 2,
};

const bytesOf = (entries: readonly Entry[]): Buffer => Buffer.from(entries.flatMap((e) => e.bytes ?? []));
/** The text the entries spell (a token that holds part of a character reads as U+FFFD, as the answer's text does). */
const textOf = (entries: readonly Entry[]): string => new TextDecoder().decode(bytesOf(entries));

/**
 * The entries' tokens and bytes: their values are floats of the model's evaluation, and the first answer evaluated
 * the prompt whole where later ones reuse its cached prefix (README: they can differ in the last digits).
 */
const tokensOf = (entries: readonly Entry[]): Array<Pick<Entry, "token" | "bytes">> => entries.map(({ token, bytes }) => ({ token, bytes }));

/** Where each entry's text starts in the answer. */
const starts = (entries: readonly Entry[]): number[] => entries.map((_, i) => textOf(entries.slice(0, i)).length);

/** A plain-text entry (its bytes its text's) of at least `min` characters, after the first two, followed by another. */
function plainEntryIndex(entries: readonly Entry[], min: number): number {
  const plain = (e: Entry): boolean => e.bytes !== null && !e.token.includes("\uFFFD") && Buffer.byteLength(e.token) === e.bytes.length;
  return entries.findIndex((e, i) => i >= 2 && i < entries.length - 2 && plain(e) && e.token.length >= min && plain(entries[i + 1]!));
}

describe("log-probabilities of an answer cut by a stop string", () => {
  let server: TestServer;
  let client: OpenAI;
  let whole: { content: string; entries: Entry[] };
  before(async () => {
    server = await startTestServer({ engine: { parallel: 1, queue: 4 } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const answer = await client.chat.completions.create(REQUEST);
    const choice = answer.choices[0]!;
    assert.equal(choice.finish_reason, "length", "the uncut answer runs to max_tokens, so every token has its entry");
    whole = { content: choice.message.content!, entries: choice.logprobs!.content! };
    assert.equal(bytesOf(whole.entries).toString("utf8"), whole.content);
  });
  after(async () => {
    await server.close();
  });

  /** The answer cut by `stop`, whole and streamed: the same content and entries both ways. */
  async function cut(
    stop: string,
    extra: Partial<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming> = {},
  ): Promise<{ content: string; entries: Entry[]; completionTokens: number }> {
    const answer = await client.chat.completions.create({ ...REQUEST, ...extra, stop: [stop] });
    const choice = answer.choices[0]!;
    assert.equal(choice.finish_reason, "stop");
    const result = { content: choice.message.content!, entries: choice.logprobs!.content!, completionTokens: answer.usage!.completion_tokens };
    const stream = await client.chat.completions.create({ ...REQUEST, ...extra, stop: [stop], stream: true });
    let text = "";
    const streamed: Entry[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0];
      if (delta === undefined) continue;
      text += delta.delta.content ?? "";
      streamed.push(...(delta.logprobs?.content ?? []));
    }
    assert.equal(text, result.content, "streamed, the same content");
    assert.deepEqual(streamed, result.entries, "streamed, the same entries");
    return result;
  }

  it("drop the tokens that wrote the stop string when it starts where a token does: the entries spell the content exactly", async () => {
    const k = plainEntryIndex(whole.entries, 1);
    assert.ok(k !== -1, JSON.stringify(whole.entries.map((e) => e.token)));
    const stop = whole.entries[k]!.token + whole.entries[k + 1]!.token;
    const at = whole.content.indexOf(stop);
    // The stop string's first place in the answer: where entry j starts.
    const j = starts(whole.entries).indexOf(at);
    assert.ok(j !== -1 && j <= k, `${JSON.stringify(stop)} starts where a token does`);
    const answer = await cut(stop);
    assert.equal(answer.content, whole.content.slice(0, at));
    const through = whole.entries.findIndex((_, i) => textOf(whole.entries.slice(0, i + 1)).includes(stop)) + 1;
    assert.equal(answer.completionTokens, through, "the tokens that wrote the stop string were generated, and are metered");
    assert.deepEqual(tokensOf(answer.entries), tokensOf(whole.entries.slice(0, j)), "no entry for a token wholly inside the stop string");
    assert.equal(textOf(answer.entries), answer.content);
  });

  it("keep a token that holds both the content's end and the stop string's start, and none after it", async () => {
    const k = plainEntryIndex(whole.entries, 2);
    assert.ok(k !== -1, JSON.stringify(whole.entries.map((e) => e.token)));
    // From the token's second character through the next token's text: the token straddles the cut.
    const stop = whole.entries[k]!.token.slice(1) + whole.entries[k + 1]!.token;
    const at = whole.content.indexOf(stop);
    const kept = starts(whole.entries).filter((s) => s < at).length;
    assert.ok(at !== -1 && !starts(whole.entries).includes(at), `${JSON.stringify(stop)} starts inside a token`);
    const answer = await cut(stop);
    assert.equal(answer.content, whole.content.slice(0, at));
    // The entries whose text starts before the cut: they spell the content, and then the straddling token's rest.
    assert.deepEqual(tokensOf(answer.entries), tokensOf(whole.entries.slice(0, kept)));
    assert.ok(textOf(answer.entries).startsWith(answer.content), "the entries start with the content");
    assert.ok(textOf(answer.entries.slice(0, -1)).length < answer.content.length, "the last entry holds some of the content");
  });

  it("under tools, a text answer cut by the caller's stop string describes its content the same way", async () => {
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
    ];
    // A seed whose answer is text (the random model may call the tool instead).
    let found: { extra: Partial<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming>; content: string; entries: Entry[] } | undefined;
    for (let seed = 0; seed < 8 && found === undefined; seed++) {
      const extra = { tools, tool_choice: "auto" as const, temperature: 1, seed };
      const answer = await client.chat.completions.create({ ...REQUEST, ...extra });
      const choice = answer.choices[0]!;
      if (choice.finish_reason === "length" && choice.message.tool_calls === undefined) {
        found = { extra, content: choice.message.content!, entries: choice.logprobs!.content! };
      }
    }
    assert.ok(found !== undefined, "some seed answers with text");
    const k = plainEntryIndex(found.entries, 2);
    assert.ok(k !== -1, JSON.stringify(found.entries.map((e) => e.token)));
    const stop = found.entries[k]!.token.slice(1) + found.entries[k + 1]!.token;
    const at = found.content.indexOf(stop);
    const answer = await cut(stop, found.extra);
    assert.equal(answer.content, found.content.slice(0, at));
    assert.deepEqual(tokensOf(answer.entries), tokensOf(found.entries.slice(0, starts(found.entries).filter((s) => s < at).length)));
    assert.ok(textOf(answer.entries).startsWith(answer.content));
    assert.ok(textOf(answer.entries.slice(0, -1)).length < answer.content.length);
  });

  it("are empty when the answer starts with the stop string", async () => {
    const stop = whole.content.slice(0, 2);
    const answer = await cut(stop);
    assert.equal(answer.content, "");
    assert.deepEqual(answer.entries, []);
  });
});
