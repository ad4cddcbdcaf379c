import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { dropDatabase, freshDatabase } from "./helpers/postgres.js";
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from "./helpers/redis.js";

type Response = Awaited<ReturnType<typeof postJson>>;

const TOKEN_CAP = 3000;
const SMALL_TOKEN_CAP = 500;
const CONCURRENCY_CAP = 3;

/** Waits for a condition the test cannot await directly (requests arriving upstream); never a timing assertion. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** The same caps through the in-process limiter (one node on SQLite) and through Redis (the shared mode, on PostgreSQL). */
const redisPrefix = testPrefix("caps");
let database: string | undefined;
const backends: Array<{ name: string; env: () => Promise<Record<string, string>>; done: () => Promise<void> }> = [
  { name: "in-process", env: async () => ({}), done: async () => {} },
  {
    name: "redis",
    env: async () => ({
      ALVEARE_DATABASE_URL: (database = await freshDatabase()),
      ALVEARE_REDIS_URL: SHARED_REDIS_URL,
      ALVEARE_REDIS_PREFIX: redisPrefix,
    }),
    done: async () => {
      await deletePrefix(redisPrefix);
      if (database !== undefined) await dropDatabase(database);
    },
  },
];

for (const backend of backends) {
  // Requests are held open by the upstream of a remote specialist until the test
  // releases them, so nothing settles during a burst and the caps are exact.
  describe(`token and concurrency caps per key (${backend.name})`, () => {
    const fake = new FakeUpstream();
    let server: TestServer;
    const infer = (auth: Record<string, string>, maxTokens = 1000) =>
      postJson(`${server.url}/v1/infer`, { specialist: "held", prompt: "hello", max_tokens: maxTokens }, auth);

    /** Fires `count` requests at once; resolves once `held` of them wait upstream and the rest have been answered. */
    async function burst(count: number, held: number, send: () => Promise<Response>): Promise<{ answered: Response[]; all: Promise<Response[]> }> {
      const answered: Response[] = [];
      const all = Promise.all(Array.from({ length: count }, () => send().then((r) => (answered.push(r), r))));
      await until(() => fake.requests.length >= held && answered.length >= count - held);
      return { answered: [...answered], all };
    }

    before(async () => {
      const base = await fake.start();
      server = await startTestServer(
        {
          specialists: { held: { description: "answers when the test says", system_prompt: "", remote: { base_url: base, model: "m" } } },
          plans: {
            metered: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", tokens_per_minute: TOKEN_CAP },
            narrow: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", max_concurrent_requests: CONCURRENCY_CAP },
            // A cap below the specialist's context: a prompt can fill it by itself.
            sipping: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*", tokens_per_minute: SMALL_TOKEN_CAP },
          },
        },
        { gated: true, env: await backend.env() },
      );
    });
    beforeEach(() => {
      fake.requests = [];
      fake.fault = "hold";
    });
    after(async () => {
      fake.release();
      await server.close();
      await fake.stop();
      await backend.done();
    });

    it("admits exactly the reservations that fit the token cap in a burst, and settles them to the real count", async () => {
      // One request alone shows what such a request reserves: the cap less what remains at its admission.
      const probe = await createKey(server, "metered");
      const single = infer(probe.auth);
      await until(() => fake.requests.length === 1);
      fake.release();
      const first = await single;
      assert.equal(first.status, 200);
      assert.equal(first.headers.get("x-ratelimit-limit-tokens"), String(TOKEN_CAP));
      const reservation = TOKEN_CAP - Number(first.headers.get("x-ratelimit-remaining-tokens"));
      assert.ok(reservation > 1000 && reservation < 1200, `reserves max_tokens and a bound of the prompt: ${reservation}`);
      const fits = Math.floor(TOKEN_CAP / reservation);

      fake.requests = [];
      const { auth } = await createKey(server, "metered");
      const { answered, all } = await burst(12, fits, () => infer(auth));
      assert.equal(fake.requests.length, fits, "only the requests that fit reached the engine");
      assert.equal(answered.length, 12 - fits);
      for (const r of answered) {
        assert.equal(r.status, 429);
        const error = r.json.error as { code: string; type: string; message: string };
        assert.equal(error.code, "token_rate_limit_exceeded");
        assert.equal(error.type, "rate_limit_error");
        // Why a window with tokens left refused it: what is left, and what this request holds while it runs.
        assert.match(
          error.message,
          new RegExp(
            `^Token rate limit reached: ${TOKEN_CAP} tokens per 60 seconds for this API key, ${TOKEN_CAP - fits * reservation} left now, ` +
              `and this request holds up to ${reservation} while it runs \\(its prompt and max_tokens\\)\\. Retry after \\d+ ms, or ask for fewer max_tokens\\.$`,
          ),
        );
        const seconds = Number(r.headers.get("retry-after"));
        const ms = Number(r.headers.get("retry-after-ms"));
        assert.ok(ms > 0 && ms <= 60_000 && seconds * 1000 >= ms && Number.isInteger(seconds), `Retry-After ${seconds} s / ${ms} ms`);
        assert.equal(r.headers.get("x-ratelimit-limit-tokens"), String(TOKEN_CAP));
        assert.equal(r.headers.get("x-ratelimit-remaining-tokens"), String(TOKEN_CAP - fits * reservation));
        assert.match(r.headers.get("x-ratelimit-reset-tokens") ?? "", /^\d+$/);
        assert.ok(Number(r.headers.get("x-ratelimit-reset-tokens")) <= 60);
        // A token refusal takes no request slot.
        assert.equal(r.headers.get("x-ratelimit-remaining-requests"), String(1000 - fits));
      }
      fake.release();
      const results = await all;
      assert.equal(results.filter((r) => r.status === 200).length, fits);

      // Each settled to what the upstream reported (4 tokens), so the window now holds far less.
      const models = await fetch(`${server.url}/v1/models`, { headers: auth });
      assert.equal(models.headers.get("x-ratelimit-remaining-tokens"), String(TOKEN_CAP - fits * 4));
      assert.match(models.headers.get("x-ratelimit-reset-tokens") ?? "", /^\d+$/);
    });

    it("answers a reservation larger than the cap with a 400 naming max_tokens, never a 429", async () => {
      const { auth } = await createKey(server, "metered");
      for (const r of [
        await infer(auth, 4000),
        await postJson(
          `${server.url}/v1/chat/completions`,
          { model: "alveare-held", messages: [{ role: "user", content: "hi" }], max_tokens: 4000 },
          auth,
        ),
      ]) {
        assert.equal(r.status, 400);
        const error = r.json.error as { code: string; param: string; message: string };
        assert.equal(error.code, "invalid_parameter");
        assert.equal(error.param, "max_tokens");
        assert.match(error.message, /max_tokens/);
        assert.equal(r.headers.get("retry-after"), null);
      }
      assert.equal(fake.requests.length, 0);
      const models = await fetch(`${server.url}/v1/models`, { headers: auth });
      assert.equal(models.headers.get("x-ratelimit-remaining-requests"), "1000", "the refused requests counted nothing");
      assert.equal(models.headers.get("x-ratelimit-remaining-tokens"), String(TOKEN_CAP));
    });

    it("refuses a prompt too long for the cap by itself with a 400 naming the prompt, not max_tokens", async () => {
      const { auth } = await createKey(server, "sipping");
      const long = "word ".repeat(SMALL_TOKEN_CAP);
      const chat = await postJson(
        `${server.url}/v1/chat/completions`,
        { model: "alveare-held", messages: [{ role: "user", content: long }], max_tokens: 1 },
        auth,
      );
      const native = await postJson(`${server.url}/v1/infer`, { specialist: "held", prompt: long, max_tokens: 1 }, auth);
      for (const [r, param] of [
        [chat, "messages"],
        [native, "prompt"],
      ] as const) {
        assert.equal(r.status, 400, JSON.stringify(r.json));
        const error = r.json.error as { code: string; param: string; message: string };
        assert.equal(error.code, "invalid_parameter");
        assert.equal(error.param, param);
        assert.match(error.message, new RegExp(`^Invalid '${param}': the prompt may use up to \\d+ tokens by itself`));
        assert.match(error.message, new RegExp(`limit of ${SMALL_TOKEN_CAP} tokens`));
      }
      assert.equal(fake.requests.length, 0, "neither reached the upstream");
    });

    it("reserves a request's tools by their JSON and the upstream template's instructions, and refuses tools that cannot fit", async () => {
      const tool = { type: "function", function: { name: "f", description: "d".repeat(600), parameters: { type: "object" } } };
      const chat = (auth: Record<string, string>, maxTokens: number, tools?: unknown[]) =>
        postJson(
          `${server.url}/v1/chat/completions`,
          { model: "alveare-held", messages: [{ role: "user", content: "hi" }], max_tokens: maxTokens, ...(tools ? { tools } : {}) },
          auth,
        );
      const { auth } = await createKey(server, "metered");
      const pending = chat(auth, 100, [tool]);
      await until(() => fake.requests.length === 1);
      const during = await fetch(`${server.url}/v1/models`, { headers: auth });
      const reserved = TOKEN_CAP - Number(during.headers.get("x-ratelimit-remaining-tokens"));
      // 100 of max_tokens, ~700 for the tool's JSON and the message, 1,024 for the template's instructions.
      assert.ok(reserved > 1724 && reserved < 1900, `reserves the tool's JSON and the instructions around it: ${reserved}`);
      fake.release();
      assert.equal((await pending).status, 200);

      // The largest max_tokens that fits the cap with the message alone, one token too many with the tool as well.
      const maxTokens = TOKEN_CAP - (reserved - 100) + 1;
      const refused = await chat(auth, maxTokens, [tool]);
      assert.equal(refused.status, 400);
      assert.equal((refused.json.error as { code: string }).code, "invalid_parameter");
      assert.equal(fake.requests.length, 1, "the refused request never reached the upstream");
      const alone = chat(auth, maxTokens);
      await until(() => fake.requests.length === 2);
      fake.release();
      assert.equal((await alone).status, 200);
    });

    it("reserves max_tokens for each of n choices, and refuses n that cannot fit with a 400 naming max_tokens", async () => {
      const chat = (auth: Record<string, string>, n: number, maxTokens: number) =>
        postJson(
          `${server.url}/v1/chat/completions`,
          { model: "alveare-held", messages: [{ role: "user", content: "hi" }], max_tokens: maxTokens, n },
          auth,
        );
      const { auth } = await createKey(server, "metered");
      const pending = chat(auth, 3, 500);
      await until(() => fake.requests.length === 1);
      assert.equal(fake.requests[0]!.n, 3, "n is passed to the upstream");
      // While the request is held, the window holds its whole reservation: three choices' max_tokens and the prompt's bound.
      const during = await fetch(`${server.url}/v1/models`, { headers: auth });
      const reserved = TOKEN_CAP - Number(during.headers.get("x-ratelimit-remaining-tokens"));
      assert.ok(reserved > 1500 && reserved < 1700, `reserves 3 × max_tokens and a bound of the prompt: ${reserved}`);
      fake.release();
      assert.equal((await pending).status, 200);
      // Metered as one request, with the tokens the upstream reported for all its choices.
      const usage = (await (await fetch(`${server.url}/v1/usage`, { headers: auth })).json()) as { requests_used: number; tokens_used: number };
      assert.deepEqual({ requests: usage.requests_used, tokens: usage.tokens_used }, { requests: 1, tokens: 4 });

      const refused = await chat(auth, 4, 1000);
      assert.equal(refused.status, 400);
      const error = refused.json.error as { code: string; param: string; message: string };
      assert.equal(error.code, "invalid_parameter");
      assert.equal(error.param, "max_tokens");
      assert.match(error.message, /max_tokens × n/);
      assert.equal(fake.requests.length, 1);
    });

    it("holds a key to its concurrency cap exactly; a slot frees when a request ends", async () => {
      const { auth } = await createKey(server, "narrow");
      const { answered, all } = await burst(10, CONCURRENCY_CAP, () => infer(auth));
      assert.equal(fake.requests.length, CONCURRENCY_CAP);
      assert.equal(answered.length, 10 - CONCURRENCY_CAP);
      for (const r of answered) {
        assert.equal(r.status, 429);
        assert.equal((r.json.error as { code: string }).code, "concurrency_limit_exceeded");
        assert.equal(r.headers.get("retry-after"), "1");
        assert.equal(r.headers.get("retry-after-ms"), "1000");
        assert.equal(r.headers.get("x-ratelimit-limit-tokens"), null, "no token cap on this plan");
      }
      // Another key of the same plan has its own slots.
      const other = await createKey(server, "narrow");
      const otherRequest = infer(other.auth);
      await until(() => fake.requests.length === CONCURRENCY_CAP + 1);
      fake.release();
      assert.equal((await otherRequest).status, 200);
      assert.deepEqual((await all).map((r) => r.status).filter((s) => s === 200).length, CONCURRENCY_CAP);
      fake.fault = "ok";
      assert.equal((await infer(auth)).status, 200, "the slots were freed");
    });

    it("leaves the shipped plans without token or concurrency caps", async () => {
      const { auth } = await createKey(server, "professional");
      const { answered, all } = await burst(12, 12, () => infer(auth, 4096));
      assert.equal(answered.length, 0);
      assert.equal(fake.requests.length, 12, "every request reached the engine at once");
      fake.release();
      for (const r of await all) {
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("x-ratelimit-limit-tokens"), null);
        assert.equal(r.headers.get("x-ratelimit-remaining-tokens"), null);
      }
    });
  });
}
