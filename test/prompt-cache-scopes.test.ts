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
