import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { tokensAtLeast } from "../src/engines/embedded/tokens-at-least.js";
import { postJson, startTestServer, tinyModel, type TestServer } from "./helpers/fixtures.js";

/** Deterministic text of `length` characters drawn from `alphabet` (words, CJK, emoji, runs). */
function textOf(alphabet: readonly string[], length: number, seed: number): string {
  let state = seed;
  const parts: string[] = [];
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    parts.push(alphabet[state % alphabet.length]!);
  }
  return parts.join("");
}

const ALPHABETS: Record<string, readonly string[]> = {
  words: ["the ", "honey ", "bees ", "quarterly ", "revenue ", "grew ", ". ", "\n"],
  cjk: ["漢", "字", "蜂", "蜜", "。"],
  emoji: ["😀", "🐝", "🍯", " "],
  runs: ["x", "x", "x", "x", " ", "xx"],
  mixed: ["the ", "漢", "😀", "x", "  ", "é", "\t", "1234"],
};

describe("a prompt far over the context is refused without being tokenized whole", () => {
  describe("tokensAtLeast: a lower bound, never more than the whole text's tokens", () => {
    let llama: Llama;
    const models: Array<[string, LlamaModel]> = [];
    before(async () => {
      llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error });
      for (const tokenizer of ["spm", "bpe"] as const) {
        models.push([tokenizer, await llama.loadModel({ modelPath: await tinyModel({ tokenizer }) })]);
      }
    });
    after(async () => {
      for (const [, model] of models) await model.dispose();
      await llama.dispose();
    });

    it("claims at most the real count, and finds a long text over a limit below it", () => {
      for (const [tokenizer, model] of models) {
        const count = (text: string): number => model.tokenize(text, false, "trimLeadingSpace").length;
        for (const [kind, alphabet] of Object.entries(ALPHABETS)) {
          for (const seed of [1, 2, 3]) {
            // Several slices' worth (a slice is 4,096 code units), short enough to tokenize whole here.
            const text = textOf(alphabet, 6000 + seed * 1500, seed);
            const real = count(text);
            const what = `${tokenizer} ${kind} seed ${seed} (${real} tokens)`;
            assert.equal(tokensAtLeast(count, [text], real + 1, 0), undefined, what);
            assert.equal(tokensAtLeast(count, [text, text], 2 * real + 1, 0), undefined, what);
            const found = tokensAtLeast(count, [text], Math.floor(real / 2), 0);
            assert.ok(found !== undefined && found >= Math.floor(real / 2) && found <= real, `${what}: ${found}`);
          }
        }
      }
    });

    it("does not look at texts of fewer bytes than the limit, nor at short ones (counted whole, exactly)", () => {
      let calls = 0;
      const tokenize = (): number => {
        calls++;
        return 1_000_000;
      };
      assert.equal(tokensAtLeast(tokenize, ["abc", "def"], 7, 0), undefined);
      assert.equal(tokensAtLeast(tokenize, ["abc".repeat(1000)], 7), undefined);
      assert.equal(calls, 0);
      assert.ok(tokensAtLeast(tokenize, ["abc".repeat(10_000)], 7) !== undefined);
    });
  });

  describe("over HTTP", () => {
    let server: TestServer;
    before(async () => {
      // The chat specialist with room for a prompt of more bytes than the check starts at (16 KiB) that fits.
      // A body limit that lets a batch of embeddings inputs hold several megabytes.
      server = await startTestServer({ specialists: { chat: { context_size: 8192 } }, body_limit: 8 * 1024 * 1024 });
    });
    after(async () => {
      await server.close();
    });

    // 450 KB of characters a SentencePiece vocabulary spells in bytes: llama.cpp's tokenizer is quadratic in
    // such text, and tokenizing it whole held the event loop ~15 s on the test machine (a megabyte: over a minute).
    const cjk = "漢字蜂蜜".repeat(37_500);

    it("chat completions: 400 context_length_exceeded at once, saying at least how many tokens", async () => {
      const started = performance.now();
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: cjk }],
        max_tokens: 1,
      });
      const ms = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      const error = r.json.error as { code: string; param: string; message: string };
      assert.deepEqual([error.code, error.param], ["context_length_exceeded", "messages"]);
      assert.match(error.message, /context holds \d+ tokens and your prompt takes at least \d+, leaving no room for an answer/);
      assert.ok(ms < 3000, `took ${Math.round(ms)} ms`);
    });

    it("a tool call's arguments count too", async () => {
      const started = performance.now();
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: cjk } }] },
          { role: "tool", tool_call_id: "c1", content: "ok" },
        ],
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
        max_tokens: 1,
      });
      const ms = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal((r.json.error as { code: string }).code, "context_length_exceeded");
      assert.ok(ms < 3000, `took ${Math.round(ms)} ms`);
    });

    it("tools' documentation counts too: refused before the documented prompt is tokenized whole", async () => {
      // One description of 96 KB (within the 128 KiB cap on tools) that a SentencePiece vocabulary spells in bytes:
      // tokenized whole, in time quadratic in its length, it held the event loop about a second.
      const tools = [
        {
          type: "function",
          function: { name: "lookup", description: "漢字蜂蜜".repeat(8000), parameters: { type: "object", properties: { a: { type: "string" } } } },
        },
      ];
      // (This server has no gate: a token reservation is never computed here.)
      const started = performance.now();
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "hi" }],
        tools,
        max_tokens: 1,
      });
      const ms = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      const error = r.json.error as { code: string; message: string };
      assert.equal(error.code, "context_length_exceeded");
      assert.match(error.message, /your prompt takes at least \d+/);
      assert.ok(ms < 1500, `took ${Math.round(ms)} ms`);
    });

    it("embeddings: 400 context_length_exceeded naming input, at once", async () => {
      const started = performance.now();
      const r = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input: ["honey", cjk] });
      const ms = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      const error = r.json.error as { code: string; param: string; message: string };
      assert.deepEqual([error.code, error.param], ["context_length_exceeded", "input"]);
      assert.match(error.message, /input\[1\] is at least \d+ tokens/);
      assert.ok(ms < 3000, `took ${Math.round(ms)} ms`);
    });

    it("embeddings: a batch of inputs each just under the slicing threshold is refused at the first over the context", async () => {
      // 400 inputs of 16,380 bytes of CJK (counted whole, each over the context): measuring them all before
      // refusing tokenized 6.5 MB, seconds of the event loop for a 400 that costs the caller nothing.
      const input = Array.from({ length: 400 }, () => "漢字蜂蜜".repeat(1365));
      const started = performance.now();
      const r = await postJson(`${server.url}/v1/embeddings`, { model: "alveare-embed", input });
      const ms = performance.now() - started;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      const error = r.json.error as { code: string; message: string };
      assert.equal(error.code, "context_length_exceeded");
      assert.match(error.message, /input\[0\] is \d+ tokens/);
      // ~0.1 s on a quiet machine, ~0.3 s on a loaded one; measuring every input took seconds.
      assert.ok(ms < 3000, `took ${Math.round(ms)} ms`);
    });

    it("still serves a prompt of more bytes than the context holds tokens when it fits", async () => {
      // 17,600 bytes, 4,400 tokens: the check looks at it and lets it through to be counted whole.
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "the the the the ".repeat(1100) }],
        max_tokens: 1,
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });

    it("bounds the prompt as written, not the request's text: replayed arguments are re-serialized compactly", async () => {
      // Arguments as Python's json.dumps writes them (non-ASCII as \\uXXXX: what LangChain replays) and pretty-printed:
      // over 8,192 tokens as sent, a few thousand in the prompt, where the chat template writes the parsed
      // arguments compactly. Both fit and are served.
      const escaped = JSON.stringify({ text: "é".repeat(3000) }).replace(/é/g, "\\u00e9");
      const pretty = JSON.stringify({ rows: Array.from({ length: 300 }, (_, k) => ({ k })) }, null, 8);
      for (const args of [escaped, pretty]) {
        for (const withTools of [true, false]) {
          const r = await postJson(`${server.url}/v1/chat/completions`, {
            model: "alveare-chat",
            messages: [
              { role: "user", content: "hi" },
              { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: args } }] },
              { role: "tool", tool_call_id: "c1", content: "ok" },
            ],
            ...(withTools ? { tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }] } : {}),
            max_tokens: 1,
          });
          assert.equal(r.status, 200, `${args.slice(0, 20)} tools ${withTools}: ${JSON.stringify(r.json)}`);
        }
      }
    });
  });
});
