import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama, type Token } from "node-llama-cpp";
import OpenAI from "openai";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { classifierPrompt } from "../src/specialists/defaults.js";
import { postJson, startTestServer, tinyModel, type TestServer } from "./helpers/fixtures.js";

const LABELS = ["positive", "negative", "neutral"];
const TEXT = "The product arrived late but works well.";
const messages = (content: string) => [{ role: "user" as const, content }];

function embeddedEngine(server: TestServer, id: string): EmbeddedEngine {
  const engine = server.registry.get(id)?.engine;
  assert.ok(engine instanceof EmbeddedEngine);
  return engine;
}

/**
 * Each label's log-probability computed here, apart from the server: the
 * prompt's tokens as the engine formats them, then the label's tokens, each
 * scored with a fresh context on the same model file.
 */
async function independentLabelLogprobs(promptTokens: readonly Token[], labels: readonly string[]): Promise<number[]> {
  const llama = await getLlama({ gpu: false });
  const model = await llama.loadModel({ modelPath: await tinyModel() });
  const context = await model.createContext({ contextSize: 512, sequences: 1 });
  try {
    const sequence = context.getSequence();
    const out: number[] = [];
    for (const label of labels) {
      await sequence.clearHistory();
      const tokens = model.tokenize(label, false, "trimLeadingSpace");
      const all = [...promptTokens, ...tokens];
      const first = promptTokens.length - 1;
      const result = await sequence.controlledEvaluate(
        all.map((t, i) =>
          i >= first && i < all.length - 1
            ? [t, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]
            : t,
        ),
      );
      let sum = 0;
      tokens.forEach((t, j) => (sum += Math.log(result[first + j]!.next.probabilities!.get(t)!)));
      out.push(sum);
    }
    return out;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

describe("API depth: log-probabilities, label scores, several choices", () => {
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer({
      engine: { parallel: 4, queue: 16 },
      specialists: { certain: { description: "one label only", output: { type: "labels", labels: ["yes"] } } },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  describe("logprobs", () => {
    it("are the model's own, sorted, and name the greedy token first at temperature 0", async () => {
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Hello there"),
        max_tokens: 8,
        temperature: 0,
        logprobs: true,
        top_logprobs: 5,
      });
      const choice = completion.choices[0]!;
      assert.equal(choice.message.refusal, null);
      const content = choice.logprobs!.content!;
      assert.ok(content.length >= 1 && content.length <= completion.usage!.completion_tokens);
      for (const entry of content) {
        assert.ok(entry.logprob <= 0);
        // A byte-fallback token reads as U+FFFD and carries its raw byte, a control token has none; any other token's bytes are its text's.
        if (entry.bytes !== null && !entry.token.includes("\uFFFD")) assert.deepEqual(entry.bytes, [...Buffer.from(entry.token, "utf8")]);
        assert.equal(entry.top_logprobs.length, 5);
        const values = entry.top_logprobs.map((t) => t.logprob);
        assert.deepEqual(
          values,
          [...values].sort((a, b) => b - a),
          "most likely first",
        );
        assert.ok(values.reduce((s, l) => s + Math.exp(l), 0) <= 1 + 1e-4, "probabilities of distinct tokens sum to at most 1");
        // Greedy: the chosen token is the most likely one.
        assert.equal(entry.top_logprobs[0]!.token, entry.token);
        assert.ok(Math.abs(entry.top_logprobs[0]!.logprob - entry.logprob) < 1e-9);
      }
      // The first token's log-probability is the raw next-token distribution after the prompt.
      const engine = embeddedEngine(server, "chat");
      const specialist = server.registry.get("chat")!;
      const raw = await engine.nextTokenProbabilities([{ role: "system", content: specialist.systemPrompt }, ...messages("Hello there")]);
      const [bestToken, bestP] = raw.entries().next().value!;
      assert.ok(Math.abs(Math.exp(content[0]!.logprob) - bestP) < 1e-4, `first token p ${Math.exp(content[0]!.logprob)} vs ${bestP} (${bestToken})`);
    });

    it("contain the sampled token among the alternatives at temperature 1 (top 20)", async () => {
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Tell me something"),
        max_tokens: 10,
        temperature: 1,
        // A narrow nucleus keeps the sampled token within the 20 most likely ones.
        top_p: 0.2,
        seed: 7,
        logprobs: true,
        top_logprobs: 20,
      });
      for (const entry of completion.choices[0]!.logprobs!.content!) {
        assert.ok(entry.top_logprobs.some((t) => t.token === entry.token && Math.abs(t.logprob - entry.logprob) < 1e-9));
      }
    });

    it("spell the answer: their bytes, joined, are the content's, word-leading spaces included", async () => {
      let spaced = 0;
      let controls = 0;
      let checked = 0;
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const completion = await client.chat.completions.create({
          model: "alveare-chat",
          messages: messages("Write a few words"),
          max_tokens: 24,
          temperature: 1,
          seed,
          logprobs: true,
          top_logprobs: 3,
        });
        const choice = completion.choices[0]!;
        if (choice.finish_reason !== "length") continue; // an end-of-generation token ends the text but has no entry
        checked++;
        const entries = choice.logprobs!.content!;
        const joined = Buffer.from(entries.flatMap((e) => e.bytes ?? []));
        assert.equal(new TextDecoder().decode(joined), choice.message.content, `seed ${seed}: ${JSON.stringify(entries.map((e) => e.token))}`);
        spaced += entries.slice(1).filter((e) => e.token.startsWith(" ")).length;
        controls += entries.filter((e) => e.bytes === null).length;
      }
      assert.ok(checked >= 2, `${checked} answers ran to max_tokens`);
      assert.ok(spaced > 0, "the answers hold words that start with a space (what SentencePiece drops from a lone token)");
      assert.ok(controls > 0, "and control tokens, named in `token` with null `bytes`, as the text leaves them out");
    });

    it("stream: each chunk carries its tokens' log-probabilities, the same as the whole answer", async () => {
      const request = { model: "alveare-chat", messages: messages("Stream it"), max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 };
      const whole = await client.chat.completions.create(request);
      const stream = await client.chat.completions.create({ ...request, stream: true });
      const streamed: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] = [];
      let text = "";
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice === undefined) continue;
        text += choice.delta.content ?? "";
        if (choice.finish_reason === null) streamed.push(...(choice.logprobs?.content ?? []));
      }
      assert.equal(text, whole.choices[0]!.message.content);
      assert.deepEqual(streamed, whole.choices[0]!.logprobs!.content);
      // Greedy decoding gives the same answer whether log-probabilities are read or not.
      const plain = await client.chat.completions.create({ model: request.model, messages: request.messages, max_tokens: 8, temperature: 0 });
      assert.equal(plain.choices[0]!.message.content, text);
    });

    it("are null when not asked for; top_logprobs alone is refused naming it", async () => {
      const completion = await client.chat.completions.create({ model: "alveare-chat", messages: messages("Hi"), max_tokens: 3 });
      assert.equal(completion.choices[0]!.logprobs, null);
      assert.equal(completion.choices[0]!.message.refusal, null);
      const refused = await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages: messages("Hi"), top_logprobs: 2 });
      assert.equal(refused.status, 400);
      assert.deepEqual(
        { code: (refused.json.error as Record<string, unknown>).code, param: (refused.json.error as Record<string, unknown>).param },
        { code: "invalid_parameter", param: "top_logprobs" },
      );
      const tooMany = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: messages("Hi"),
        logprobs: true,
        top_logprobs: 21,
      });
      assert.equal(tooMany.status, 400);
      assert.equal((tooMany.json.error as Record<string, unknown>).param, "top_logprobs");
    });
  });

  describe("label scores", () => {
    it("/v1/infer: scores sum to 1, the argmax is chosen at temperature 0, and they match an independent computation", async () => {
      const { status, json } = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: TEXT, temperature: 0 });
      assert.equal(status, 200);
      assert.deepEqual(Object.keys(json).sort(), ["confidence", "id", "latency_ms", "result", "scores", "specialist", "tokens_used"]);
      const scores = json.scores as Record<string, number>;
      assert.deepEqual(Object.keys(scores).sort(), [...LABELS].sort());
      assert.ok(Math.abs(Object.values(scores).reduce((s, p) => s + p, 0) - 1) < 1e-9);
      const best = Object.entries(scores).sort((a, b) => b[1] - a[1])[0]![0];
      assert.equal(json.result, best);
      assert.equal(json.confidence, scores[best]);

      const engine = embeddedEngine(server, "classify");
      const promptTokens = engine.promptTokens([
        { role: "system", content: classifierPrompt(LABELS) },
        { role: "user", content: TEXT },
      ]);
      const logprobs = await independentLabelLogprobs(promptTokens, LABELS);
      const max = Math.max(...logprobs);
      const weights = logprobs.map((l) => Math.exp(l - max));
      const total = weights.reduce((s, w) => s + w, 0);
      LABELS.forEach((label, i) =>
        assert.ok(Math.abs(scores[label]! - weights[i]! / total) < 1e-3, `${label}: ${scores[label]} vs ${weights[i]! / total}`),
      );
    });

    it("at temperature 1.5 every answer is a label, reported with its own score", async () => {
      for (let seed = 0; seed < 6; seed++) {
        const { json } = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: TEXT, temperature: 1.5, seed });
        assert.ok(LABELS.includes(json.result as string));
        assert.equal(json.confidence, (json.scores as Record<string, number>)[json.result as string]);
      }
    });

    it("sampled at a low temperature, the answer is the label the scores favour (drawn from the scores, not spelt token by token)", async () => {
      for (let seed = 0; seed < 8; seed++) {
        const { json } = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: `Low ${seed}`, temperature: 0.05, seed });
        const ranked = Object.entries(json.scores as Record<string, number>).sort((a, b) => b[1] - a[1]);
        // Below temperature 1 a draw sharpens the scores: a label half as likely as the best is 2^20 times rarer at 0.05.
        if (ranked[1]![1] > ranked[0]![1] / 2) continue;
        assert.equal(json.result, ranked[0]![0], JSON.stringify(json));
        assert.equal(json.confidence, ranked[0]![1]);
      }
    });

    it("the same seed draws the same labels, and choice i of n draws as seed + i does alone", async () => {
      const body = { model: "alveare-classify", messages: messages("Seeded"), temperature: 2, seed: 7, n: 4 };
      const labels = (c: { choices: Array<{ message: { content: string | null } }> }): string[] => c.choices.map((choice) => choice.message.content!);
      const first = labels(await client.chat.completions.create(body));
      assert.deepEqual(labels(await client.chat.completions.create(body)), first);
      for (const label of first) assert.ok(LABELS.includes(label), label);
      const alone: string[] = [];
      for (let i = 0; i < 4; i++) alone.push(labels(await client.chat.completions.create({ ...body, n: 1, seed: 7 + i }))[0]!);
      assert.deepEqual(first, alone);
    });

    it("chat completions carry the chosen label's token log-probabilities when asked", async () => {
      const completion = await client.chat.completions.create({
        model: "alveare-classify",
        messages: messages(TEXT),
        temperature: 0,
        logprobs: true,
        top_logprobs: 3,
      });
      const { json } = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: TEXT, temperature: 0 });
      const choice = completion.choices[0]!;
      assert.equal(choice.message.content, json.result);
      const content = choice.logprobs!.content!;
      assert.ok(content.length >= 1);
      assert.equal(content.map((c) => c.token).join(""), json.result);
      // The label's full-sequence probability, unnormalised, is at most its normalised score.
      const sequenceP = Math.exp(content.reduce((s, c) => s + c.logprob, 0));
      assert.ok(sequenceP <= (json.confidence as number) + 1e-9);
    });

    it("sampled with logprobs, the labels' grammar still holds and the entries spell the answer", async () => {
      const seen = new Set<string>();
      for (let seed = 1; seed <= 8; seed++) {
        const completion = await client.chat.completions.create({
          model: "alveare-classify",
          messages: messages(`Sample ${seed}`),
          temperature: 2,
          seed,
          logprobs: true,
          top_logprobs: 1,
        });
        const choice = completion.choices[0]!;
        assert.ok(LABELS.includes(choice.message.content!), String(choice.message.content));
        assert.equal(choice.logprobs!.content!.map((c) => c.token).join(""), choice.message.content);
        seen.add(choice.message.content!);
      }
      assert.ok(seen.size > 1, "temperature 2 explores more than one label");
    });

    it("a single label is certain", async () => {
      for (const temperature of [0, 1]) {
        const { json } = await postJson(`${server.url}/v1/infer`, { specialist: "certain", prompt: TEXT, temperature });
        assert.deepEqual(
          { result: json.result, scores: json.scores, confidence: json.confidence },
          { result: "yes", scores: { yes: 1 }, confidence: 1 },
        );
      }
    });

    it("other specialists' /v1/infer answers keep the reference's fields, with finish_reason only when max_tokens cut them", async () => {
      const reference = ["id", "latency_ms", "result", "specialist", "tokens_used"];
      let cuts = 0;
      for (const max_tokens of [1, 4, 64]) {
        const request = { prompt: TEXT, max_tokens, temperature: 0 };
        const { json } = await postJson(`${server.url}/v1/infer`, { specialist: "summarise", ...request });
        const chat = await client.chat.completions.create({
          model: "alveare-summarise",
          messages: [{ role: "user", content: TEXT }],
          max_tokens,
          temperature: 0,
        });
        const cut = chat.choices[0]!.finish_reason === "length";
        assert.deepEqual(Object.keys(json).sort(), cut ? [...reference, "finish_reason"].sort() : reference, `max_tokens ${max_tokens}`);
        if (cut) assert.equal(json.finish_reason, "length");
        cuts += cut ? 1 : 0;
      }
      assert.ok(cuts > 0, "one token at most is cut");
    });
  });

  describe("several choices (n)", () => {
    it("n: 3 gives three choices with the prompt counted once", async () => {
      const engine = embeddedEngine(server, "chat");
      const before = engine.promptCache.promptTokensEvaluated;
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Three ways of saying a fresh thing"),
        max_tokens: 6,
        temperature: 1,
        n: 3,
        logprobs: true,
      });
      const evaluated = engine.promptCache.promptTokensEvaluated - before;
      const single = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Three ways of saying a fresh thing"),
        max_tokens: 6,
        temperature: 0,
      });
      assert.deepEqual(
        completion.choices.map((c) => c.index),
        [0, 1, 2],
      );
      const usage = completion.usage!;
      assert.ok(usage.prompt_tokens > 10);
      assert.equal(usage.prompt_tokens, single.usage!.prompt_tokens, "the prompt is counted once");
      // The system prefix is warm (earlier tests used this specialist): the rest is evaluated once, plus the last token per other choice.
      const prefix = engine.snapshotPrefixLength([
        { role: "system", content: server.registry.get("chat")!.systemPrompt },
        ...messages("Three ways of saying a fresh thing"),
      ]);
      assert.ok(prefix > 0);
      assert.ok(
        evaluated <= usage.prompt_tokens - prefix + 2,
        `prompt evaluated once (${evaluated} tokens for a ${usage.prompt_tokens}-token prompt)`,
      );
      const completionTokens = completion.choices.reduce((s, c) => s + c.logprobs!.content!.length, 0);
      assert.ok(usage.completion_tokens >= completionTokens && usage.completion_tokens <= 18);
      assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    });

    it("at temperature 0 every choice is the greedy answer", async () => {
      const request = { model: "alveare-chat", messages: messages("Same each time"), max_tokens: 6, temperature: 0 };
      const single = await client.chat.completions.create(request);
      const several = await client.chat.completions.create({ ...request, n: 4 });
      for (const choice of several.choices) assert.equal(choice.message.content, single.choices[0]!.message.content);
    });

    it("seeds hold at the ends of their range: -1 repeats, and choice i samples as seed + i alone, modulo 2^32 - 1", async () => {
      const request = { model: "alveare-chat", messages: messages("Wrap around"), max_tokens: 8, temperature: 1.5 };
      const alone = async (seed: number): Promise<string> =>
        (await client.chat.completions.create({ ...request, seed })).choices[0]!.message.content!;
      const laterChoices = async (seed: number): Promise<Array<string | null>> =>
        (await client.chat.completions.create({ ...request, seed, n: 3 })).choices.slice(1).map((c) => c.message.content);
      await alone(1); // The prompt cached first: from then on a choice after the first evaluates only the prompt's last token, as a cached request does.
      // -1 is 2^32 - 1 on 32 bits, which llama.cpp reads as "a random seed".
      assert.equal(await alone(-1), await alone(-1));
      const [minusTwo, minusOne] = [await alone(-2), await alone(-1)];
      assert.notEqual(minusTwo, minusOne, "-2 and -1 are different seeds");
      assert.deepEqual(await laterChoices(-3), [minusTwo, minusOne]);
      // 2^53 - 1 is 2^21 - 1 modulo 2^32 - 1; in doubles, 2^53 - 1 + 1 and + 2 both round to 2^53.
      const [first, second] = [await alone(2 ** 21), await alone(2 ** 21 + 1)];
      assert.notEqual(first, second);
      assert.deepEqual(await laterChoices(Number.MAX_SAFE_INTEGER), [first, second]);
    });

    it("n: 8 on 4 sequences completes, also with concurrent n requests and plain ones", async () => {
      const many = (n: number, seed: number) =>
        client.chat.completions.create({ model: "alveare-chat", messages: messages(`Go ${seed}`), max_tokens: 4, temperature: 1, seed, n });
      const results = await Promise.all([many(8, 1), many(8, 2), many(5, 3), many(1, 4), many(1, 5)]);
      assert.deepEqual(
        results.map((r) => r.choices.length),
        [8, 8, 5, 1, 1],
      );
      const engine = embeddedEngine(server, "chat");
      assert.equal(engine.busy, 0);
      assert.equal(engine.queued, 0);
    });

    it("streams every choice with its index, each opening with the role and ending with a finish reason", async () => {
      const stream = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Stream three"),
        max_tokens: 5,
        temperature: 1,
        n: 3,
        stream: true,
        stream_options: { include_usage: true },
      });
      const byIndex = new Map<number, OpenAI.Chat.Completions.ChatCompletionChunk.Choice[]>();
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        if (chunk.choices.length === 0) usage = chunk.usage;
        for (const c of chunk.choices) byIndex.set(c.index, [...(byIndex.get(c.index) ?? []), c]);
      }
      assert.deepEqual([...byIndex.keys()].sort(), [0, 1, 2]);
      for (const chunks of byIndex.values()) {
        assert.equal(chunks[0]!.delta.role, "assistant");
        assert.ok(chunks.at(-1)!.finish_reason === "stop" || chunks.at(-1)!.finish_reason === "length");
        assert.ok(chunks.slice(0, -1).every((c) => c.finish_reason === null));
      }
      assert.ok(usage !== undefined && usage !== null && usage.completion_tokens <= 15);
    });

    it("label specialists sample every choice among the labels", async () => {
      const completion = await client.chat.completions.create({ model: "alveare-classify", messages: messages(TEXT), temperature: 2, n: 6, seed: 3 });
      assert.equal(completion.choices.length, 6);
      for (const choice of completion.choices) assert.ok(LABELS.includes(choice.message.content!));
    });

    it("refuses n out of range, and n > 1 with tools, naming n", async () => {
      for (const body of [
        { model: "alveare-chat", messages: messages("x"), n: 9 },
        { model: "alveare-chat", messages: messages("x"), n: 0 },
        {
          model: "alveare-chat",
          messages: messages("x"),
          n: 2,
          tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {} } } }],
        },
      ]) {
        const { status, json } = await postJson(`${server.url}/v1/chat/completions`, body);
        assert.equal(status, 400);
        const error = json.error as Record<string, unknown>;
        assert.equal(error.code, "invalid_parameter");
        assert.equal(error.param, "n");
      }
    });
  });

  describe("remote engines pass n and logprobs through", () => {
    let front: TestServer;
    let remote: OpenAI;
    before(async () => {
      // The upstream is the embedded server above, spoken to over OpenAI's protocol.
      front = await startTestServer({
        specialists: {
          faraway: { description: "served by another node", system_prompt: "", remote: { base_url: `${server.url}/v1`, model: "alveare-chat" } },
        },
      });
      remote = new OpenAI({ baseURL: `${front.url}/v1`, apiKey: "unused", maxRetries: 0 });
    });
    after(async () => {
      await front.close();
    });

    it("whole answers", async () => {
      const completion = await remote.chat.completions.create({
        model: "alveare-faraway",
        messages: messages("Pass it on"),
        max_tokens: 4,
        n: 3,
        logprobs: true,
        top_logprobs: 2,
      });
      assert.equal(completion.choices.length, 3);
      for (const choice of completion.choices) {
        const content = choice.logprobs!.content!;
        assert.ok(content.length >= 1);
        for (const entry of content) assert.equal(entry.top_logprobs.length, 2);
      }
      assert.ok(completion.usage!.completion_tokens >= 3);
    });

    it("streams", async () => {
      const stream = await remote.chat.completions.create({
        model: "alveare-faraway",
        messages: messages("Pass it on"),
        max_tokens: 4,
        n: 2,
        logprobs: true,
        stream: true,
      });
      const indices = new Set<number>();
      let entries = 0;
      for await (const chunk of stream) {
        for (const c of chunk.choices) {
          indices.add(c.index);
          entries += c.logprobs?.content?.length ?? 0;
        }
      }
      assert.deepEqual([...indices].sort(), [0, 1]);
      assert.ok(entries >= 2);
    });
  });
});

describe("log-probabilities on a byte-level BPE vocabulary (as Qwen's and Llama 3's)", () => {
  let server: TestServer;
  let client: OpenAI;
  before(async () => {
    server = await startTestServer({ models: { base: await tinyModel({ tokenizer: "bpe", vocabulary: 1000 }) } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(async () => {
    await server.close();
  });

  it("a token that holds part of a character carries its raw bytes, not U+FFFD's", async () => {
    let partial = 0;
    for (const seed of [1, 2, 3, 4]) {
      const completion = await client.chat.completions.create({
        model: "alveare-chat",
        messages: messages("Write a few words"),
        max_tokens: 16,
        temperature: 1,
        seed,
        logprobs: true,
        top_logprobs: 20,
      });
      const choice = completion.choices[0]!;
      const entries = choice.logprobs!.content!;
      for (const entry of [...entries, ...entries.flatMap((e) => e.top_logprobs)]) {
        if (entry.bytes === null || !entry.token.includes("\uFFFD")) continue;
        partial++;
        // The vocabulary's single-byte tokens: one byte each, and none of them spells U+FFFD (EF BF BD).
        assert.ok(entry.bytes.length >= 1 && !Buffer.from(entry.bytes).includes(Buffer.from("\uFFFD")), JSON.stringify(entry));
      }
      if (choice.finish_reason === "length") {
        const joined = Buffer.from(entries.flatMap((e) => e.bytes ?? []));
        assert.equal(new TextDecoder().decode(joined), choice.message.content, `seed ${seed}`);
      }
    }
    assert.ok(partial > 0, "the alternatives include tokens that hold part of a character (half the vocabulary's bytes are ≥ 0x80)");
  });
});
