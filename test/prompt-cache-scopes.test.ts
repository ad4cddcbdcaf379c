import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import type { ChatMessage } from "../src/engines/types.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

/**
 * A prompt whose cached state another account's request could reuse is evaluated faster: from response times one
 * account could learn what another sent. Counted here in prompt tokens evaluated, not timed.
 */
const CHAT_PROMPT = defaultSpecialists().find((s) => s.id === "chat")!.systemPrompt;
const LETTER =
  "Dear team, the quarterly figures for the northern region are attached: revenue rose by four percent, costs fell by two, " +
  "and the new warehouse opened a month early. Please treat these numbers as confidential until the board meets on Friday.";
const CALLER_SYSTEM =
  "You answer for the legal department of a small shipping company. Never mention the pending merger with the harbour " +
  "authority, and always answer in two sentences or fewer, in plain English, without legal jargon of any kind.";

describe("the prompt cache across accounts, and usage.prompt_tokens_details.cached_tokens", () => {
  let server: TestServer;
  let engine: EmbeddedEngine;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  before(async () => {
    // One sequence: every request finds in it what the one before left.
    server = await startTestServer({ engine: { parallel: 1, queue: 8 } }, { gated: true });
    const found = server.registry.get("chat")?.engine;
    assert.ok(found instanceof EmbeddedEngine);
    engine = found;
    alice = (await createKey(server, "professional")).auth;
    bob = (await createKey(server, "professional")).auth;
  });
  after(() => server.close());

  /** Prompt tokens the engine evaluated for one chat completion, and what its prompt cache counted meanwhile. */
  async function ask(auth: Record<string, string>, messages: ChatMessage[]) {
    const before = engine.promptCache;
    const { status, json } = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages, max_tokens: 2 }, auth);
    assert.equal(status, 200, JSON.stringify(json));
    const now = engine.promptCache;
    const evaluated = now.promptTokensEvaluated - before.promptTokensEvaluated;
    // What the response says came from the cache is what the engine did not evaluate.
    const usage = json.usage as { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } };
    assert.equal(usage.prompt_tokens_details?.cached_tokens, usage.prompt_tokens - evaluated, "usage.prompt_tokens_details.cached_tokens");
    return {
      cached: usage.prompt_tokens_details.cached_tokens,
      evaluated,
      sequenceHits: now.sequenceHits - before.sequenceHits,
      restores: now.snapshotRestores - before.snapshotRestores,
      builds: now.snapshotBuilds - before.snapshotBuilds,
    };
  }

  it("reuses an account's own conversation, and gives another account only the specialist's system prompt", async () => {
    const messages: ChatMessage[] = [{ role: "user", content: LETTER }];
    const asServed: ChatMessage[] = [{ role: "system", content: CHAT_PROMPT }, ...messages];
    const operators = engine.snapshotPrefixLength(asServed);
    assert.ok(operators > 0, "the chat specialist's system prompt is long enough to be shared");
    const whole = engine.countPromptTokens(asServed);

    await ask(alice, messages);
    const again = await ask(alice, messages);
    assert.equal(again.evaluated, 1, "the same account's same prompt: only its last token, for its logits");
    assert.equal(again.cached, whole - 1);
    const other = await ask(bob, messages);
    assert.equal(other.evaluated, whole - operators, "another account evaluates everything after the specialist's system prompt");
    assert.equal(other.cached, operators);
    assert.equal(other.sequenceHits, 1, "and reuses that system prompt from the sequence");
    assert.equal(other.restores, 0);
  });

  it("shares a caller's own system message with no other account, its snapshot included", async () => {
    const asServed = (user: string): ChatMessage[] => [
      { role: "system", content: `${CHAT_PROMPT}\n\n${CALLER_SYSTEM}` },
      { role: "user", content: user },
    ];
    const messages = (user: string): ChatMessage[] => [
      { role: "system", content: CALLER_SYSTEM },
      { role: "user", content: user },
    ];
    const first = await ask(alice, messages(LETTER));
    assert.equal(first.builds, 1, "alice's system prefix is snapshotted");

    const other = await ask(bob, messages(LETTER));
    assert.equal(other.restores, 0, "bob does not get alice's snapshot");
    assert.equal(other.sequenceHits, 0, "nor her cached tokens");
    assert.equal(other.evaluated, engine.countPromptTokens(asServed(LETTER)), "bob's whole prompt is evaluated");
    assert.equal(other.cached, 0);

    const again = await ask(alice, messages("Thanks. Summarise it in one line."));
    assert.equal(again.restores, 1, "alice's own snapshot comes back after bob's request");
    assert.equal(again.builds, 0);
  });
});

describe("what a caller's request leaves behind for the next: its own account's", () => {
  const INVOICE = { type: "object", properties: { total: { type: "number" }, currency: { type: "string" } }, required: ["total", "currency"] };
  let server: TestServer;
  let engine: EmbeddedEngine;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  before(async () => {
    const invoice = { description: "reads invoices", system_prompt: "Read the invoice.", output: { type: "json_schema", schema: INVOICE } };
    server = await startTestServer({ specialists: { invoice } }, { gated: true });
    const found = server.registry.get("chat")?.engine;
    assert.ok(found instanceof EmbeddedEngine);
    engine = found;
    alice = (await createKey(server, "professional")).auth;
    bob = (await createKey(server, "professional")).auth;
  });
  after(() => server.close());

  /** How many grammars and remembered system prefixes one request added. */
  async function added(url: string, body: Record<string, unknown>, auth: Record<string, string>) {
    const grammars = engine.grammarsCached;
    const prefixes = engine.rememberedPrefixes.count;
    const { status, json } = await postJson(`${server.url}${url}`, body, auth);
    assert.equal(status, 200, JSON.stringify(json));
    return { grammars: engine.grammarsCached - grammars, prefixes: engine.rememberedPrefixes.count - prefixes };
  }
  const chat = (extra: Record<string, unknown>) => ({
    model: "alveare-chat",
    messages: [{ role: "user", content: "The invoice says 12 euros." }],
    max_tokens: 2,
    ...extra,
  });

  it("compiles a caller's schema once per account (a build takes milliseconds: a timing signal)", async () => {
    const schema = { type: "object", properties: { secret_field_name: { type: "string" } }, required: ["secret_field_name"] };
    const body = chat({ response_format: { type: "json_schema", json_schema: { name: "s", schema } } });
    assert.equal((await added("/v1/chat/completions", body, alice)).grammars, 1);
    assert.equal((await added("/v1/chat/completions", body, bob)).grammars, 1, "bob's request compiles its own");
    assert.equal((await added("/v1/chat/completions", body, alice)).grammars, 0, "alice's own is reused");
  });

  it("compiles a caller's tools once per account", async () => {
    const tools = [
      { type: "function", function: { name: "lookup_customer", parameters: { type: "object", properties: { id: { type: "string" } } } } },
    ];
    const body = chat({ tools });
    assert.equal((await added("/v1/chat/completions", body, alice)).grammars, 1);
    assert.equal((await added("/v1/chat/completions", body, bob)).grammars, 1, "bob's request compiles its own");
    assert.equal((await added("/v1/chat/completions", body, alice)).grammars, 0, "alice's own is reused");
  });

  it("compiles a specialist's own schema once for every account", async () => {
    const body = { specialist: "invoice", prompt: "Total: 12 EUR", max_tokens: 2 };
    const first = await added("/v1/infer", body, alice);
    assert.equal((await added("/v1/infer", body, bob)).grammars, 0, "the operator's schema is shared");
    assert.ok(first.grammars <= 1);
  });

  it("formats a caller's system prompt once per account, the specialist's once for all", async () => {
    const system = "You answer for the accounts department. ".repeat(8);
    const body = chat({
      messages: [
        { role: "system", content: system },
        { role: "user", content: "The invoice says 12 euros." },
      ],
    });
    assert.equal((await added("/v1/chat/completions", body, alice)).prefixes, 1);
    assert.equal((await added("/v1/chat/completions", body, bob)).prefixes, 1, "bob's request formats its own");
    assert.equal((await added("/v1/chat/completions", body, alice)).prefixes, 0, "alice's own is reused");
    await added("/v1/chat/completions", chat({}), alice);
    assert.equal((await added("/v1/chat/completions", chat({}), bob)).prefixes, 0, "the specialist's system prompt is shared");
  });
});
