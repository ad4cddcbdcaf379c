import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { MAX_METRICS_CONNECTIONS } from "../src/observability/metrics-listener.js";
import { createKey, postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { freePort, HeldUpstream } from "./helpers/held-upstream.js";
import { closedPort } from "./helpers/ports.js";

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

/** The samples of a Prometheus text exposition. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable metrics line: ${line}`);
    const labels: Labels = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the sample with exactly these labels (0 when absent: a counter not yet touched). */
function value(samples: Sample[], name: string, labels: Labels = {}): number {
  const want = Object.entries(labels).sort();
  const found = samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(want));
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} is ambiguous`);
  return found[0]?.value ?? 0;
}

describe("Prometheus metrics", () => {
  let server: TestServer;
  let upstream: HeldUpstream;
  let upstreamUrl: string;
  let metricsPort: number;
  let live: Awaited<ReturnType<typeof createKey>>;
  let burst: Awaited<ReturnType<typeof createKey>>;

  before(async () => {
    upstream = new HeldUpstream(false);
    upstreamUrl = await upstream.start();
    metricsPort = await freePort();
    server = await startTestServer(
      {
        engine: { parallel: 1, queue: 1 },
        specialists: { faraway: { description: "remote", system_prompt: "", remote: { base_url: upstreamUrl, model: "m" } } },
        plans: {
          big: { requests_per_minute: 10_000, requests_per_month: 100_000, specialists: "*" },
          burst: { requests_per_minute: 1, requests_per_month: 100, specialists: "*" },
        },
      },
      { gated: true, env: { ALVEARE_METRICS_PORT: String(metricsPort) } },
    );
    live = await createKey(server, "big");
    burst = await createKey(server, "burst");
  });
  after(async () => {
    await server?.close();
    await upstream?.stop();
  });

  const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await r.text();
    return { text, samples: parse(text) };
  };

  it("serves on its own listener only, named in the server's metrics URL", async () => {
    assert.equal(server.metricsUrl, `http://127.0.0.1:${metricsPort}/metrics`);
    const onPublic = await fetch(`${server.url}/metrics`);
    assert.equal(onPublic.status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);
  });

  it(`holds at most ${MAX_METRICS_CONNECTIONS} connections: past that the longest silent ones make way, so they can neither take the file descriptors nor keep a scraper out`, async () => {
    const sockets: Array<Socket & { ended?: boolean }> = [];
    try {
      for (let i = 0; i < MAX_METRICS_CONNECTIONS + 8; i++) {
        const socket: Socket & { ended?: boolean } = connect({ port: metricsPort, host: "127.0.0.1" });
        socket.on("error", () => undefined);
        socket.once("close", () => (socket.ended = true));
        sockets.push(socket);
        // One at a time, so the listener sees them in this order.
        await new Promise((resolve) => socket.once("connect", resolve));
      }
      const deadline = Date.now() + 3000;
      while (sockets.filter((s) => s.ended).length < 8) {
        assert.ok(Date.now() < deadline, `${sockets.filter((s) => s.ended).length} of the connections past the cap were closed`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.deepEqual(
        sockets.map((s) => s.ended === true),
        sockets.map((_, i) => i < 8),
        "the eight that waited longest were closed",
      );
      // With every place still held by a silent connection, a scrape is served at once, in the oldest one's place.
      assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status, 200);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it("counts known traffic exactly: successes, a 401, a 429, a stream, 503s from a full queue", async () => {
    const before = (await scrape()).samples;
    const chat = `${server.url}/v1/chat/completions`;
    const remote = { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] };

    for (let i = 0; i < 2; i++) assert.equal((await postJson(chat, remote, live.auth)).status, 200);
    const unauthenticated = await postJson(chat, remote);
    assert.equal(unauthenticated.status, 401);
    assert.equal((await postJson(chat, remote, burst.auth)).status, 200);
    const limited = await postJson(chat, remote, burst.auth);
    assert.equal(limited.status, 429);
    const stream = await fetch(chat, {
      method: "POST",
      headers: { "content-type": "application/json", ...live.auth },
      body: JSON.stringify({ ...remote, stream: true }),
    });
    assert.equal(stream.status, 200);
    assert.match(await stream.text(), /data: \[DONE\]/);
    // One running, one queued, the rest refused: the embedded engine has 1 sequence and a queue of 1.
    const local = { model: "alveare-chat", messages: [{ role: "user", content: "long" }], max_tokens: 200, seed: 1 };
    const crowd = await Promise.all(Array.from({ length: 5 }, () => postJson(chat, local, live.auth)));
    const served = crowd.filter((r) => r.status === 200);
    const refused = crowd.filter((r) => r.status === 503);
    assert.equal(served.length + refused.length, 5);
    assert.ok(refused.length >= 1, "a full queue refuses some");
    const localTokens = served.reduce((n, r) => n + (r.json.usage as { prompt_tokens: number }).prompt_tokens, 0);
    const localCompletion = served.reduce((n, r) => n + (r.json.usage as { completion_tokens: number }).completion_tokens, 0);

    const { text, samples: after } = await scrape();
    const delta = (name: string, labels: Labels = {}): number => value(after, name, labels) - value(before, name, labels);
    const route = "/v1/chat/completions";
    assert.equal(delta("alveare_http_requests_total", { route, status: "200" }), 4 + served.length);
    assert.equal(delta("alveare_http_requests_total", { route, status: "401" }), 1);
    assert.equal(delta("alveare_http_requests_total", { route, status: "429" }), 1);
    assert.equal(delta("alveare_http_requests_total", { route, status: "503" }), refused.length);
    assert.equal(delta("alveare_http_request_duration_seconds_count", { route }), 11);
    assert.equal(delta("alveare_http_request_duration_seconds_bucket", { route, le: "+Inf" }), 11);
    assert.equal(delta("alveare_gate_rejections_total", { code: "missing_api_key" }), 1);
    assert.equal(delta("alveare_gate_rejections_total", { code: "rate_limit_exceeded" }), 1);
    const endpoint = "chat.completions";
    assert.equal(delta("alveare_inference_requests_total", { specialist: "faraway", endpoint, outcome: "success" }), 4);
    assert.equal(delta("alveare_inference_requests_total", { specialist: "faraway", endpoint, outcome: "rate_limit_exceeded" }), 1);
    assert.equal(delta("alveare_inference_requests_total", { specialist: "chat", endpoint, outcome: "success" }), served.length);
    assert.equal(delta("alveare_inference_requests_total", { specialist: "chat", endpoint, outcome: "overloaded" }), refused.length);
    // The upstream reports 3 prompt and 2 completion tokens per answer.
    assert.equal(delta("alveare_tokens_total", { specialist: "faraway", kind: "prompt" }), 12);
    assert.equal(delta("alveare_tokens_total", { specialist: "faraway", kind: "completion" }), 8);
    assert.equal(delta("alveare_tokens_total", { specialist: "chat", kind: "prompt" }), localTokens);
    assert.equal(delta("alveare_tokens_total", { specialist: "chat", kind: "completion" }), localCompletion);
    // The stream had two pieces: one first token, one gap.
    assert.equal(delta("alveare_time_to_first_token_seconds_count", { specialist: "faraway" }), 1);
    assert.equal(delta("alveare_inter_token_latency_seconds_count", { specialist: "faraway" }), 1);
    assert.equal(value(after, "alveare_upstream_healthy", { specialist: "faraway", upstream: upstreamUrl }), 1);
    assert.equal(value(after, "alveare_ledger_pending_writes"), 0);
    assert.ok(after.some((s) => s.name === "alveare_engine_queue_depth" && s.labels.engine?.startsWith("embedded:")));
    assert.ok(after.some((s) => s.name === "alveare_engine_sequences_busy" && s.labels.engine?.startsWith("remote:")));
    assert.ok(
      after.some((s) => s.name === "process_cpu_user_seconds_total"),
      "Node's default metrics",
    );
    for (const secret of [live.key, live.accountId, live.keyId, burst.key, burst.accountId, "long"]) {
      assert.ok(!text.includes(secret), `the scrape must not contain ${secret}`);
    }
  });

  it("the Grafana dashboard in examples/ only queries metrics the server exports", async () => {
    const dashboard = readFileSync(new URL("../../examples/grafana-dashboard.json", import.meta.url), "utf8");
    const queried = new Set([...dashboard.matchAll(/\b((?:alveare|process|nodejs)_\w+?)(?:_bucket)?\{/g)].map((m) => m[1]!));
    assert.ok(queried.size >= 10);
    const { text } = await scrape();
    for (const name of queried) assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), `${name} is exported`);
  });

  it("labels unknown routes and specialists with one bounded value", async () => {
    const before = (await scrape()).samples;
    assert.equal((await fetch(`${server.url}/no/such/path/${Date.now()}`)).status, 404);
    assert.equal(
      (await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-nope", messages: [{ role: "user", content: "x" }] }, live.auth)).status,
      400,
    );
    const { text, samples: after } = await scrape();
    assert.equal(
      value(after, "alveare_http_requests_total", { route: "unmatched", status: "404" }) -
        value(before, "alveare_http_requests_total", { route: "unmatched", status: "404" }),
      1,
    );
    assert.ok(!text.includes("/no/such/path"));
    assert.ok(!text.includes("alveare-nope"));
  });
});

describe("Prometheus metrics per remote upstream", () => {
  let server: TestServer;
  let fake: FakeUpstream;
  let fakeUrl: string;
  let deadUrl: string;
  let metricsPort: number;
  let auth: Record<string, string>;

  before(async () => {
    fake = new FakeUpstream();
    fakeUrl = await fake.start();
    deadUrl = `http://127.0.0.1:${await closedPort()}/v1`;
    metricsPort = await freePort();
    server = await startTestServer(
      {
        specialists: {
          // The dead upstream is listed first: the first request tries it, fails to connect and is retried on the live one.
          pair: {
            description: "two upstreams",
            system_prompt: "",
            remote: {
              upstreams: [
                { base_url: deadUrl, model: "m" },
                { base_url: fakeUrl, model: "m" },
              ],
            },
          },
          // Another setting (its own engine) on the same upstream and model: one series, the sum of both.
          quick: { description: "short timeout", system_prompt: "", remote: { base_url: fakeUrl, model: "m", read_timeout_ms: 300 } },
          // A third setting on that upstream: an engine of its own, with the same name as quick's.
          patient: { description: "long timeout", system_prompt: "", remote: { base_url: fakeUrl, model: "m", read_timeout_ms: 60_000 } },
        },
        plans: { big: { requests_per_minute: 10_000, requests_per_month: 100_000, specialists: "*" } },
      },
      { gated: true, env: { ALVEARE_METRICS_PORT: String(metricsPort) } },
    );
    auth = (await createKey(server, "big")).auth;
  });
  after(async () => {
    await server?.close();
    await fake?.stop();
  });

  const samples = async (): Promise<Sample[]> => parse(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
  const chat = (model: string, extra: Record<string, unknown> = {}) =>
    postJson(`${server.url}/v1/chat/completions`, { model, messages: [{ role: "user", content: "hi" }], ...extra }, auth);

  it("counts each exchange by outcome, the seconds they took and what is in flight, never a key or prompt", async () => {
    fake.fault = "ok";
    assert.equal((await chat("alveare-pair")).status, 200); // dead upstream: connection_error, then ok on the live one
    assert.equal((await chat("alveare-quick")).status, 200);
    fake.fault = "500";
    assert.equal((await chat("alveare-pair")).status, 502);
    fake.fault = "slow";
    assert.equal((await chat("alveare-quick")).status, 504);
    fake.fault = "cut-stream";
    const cut = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      // On the single-upstream specialist: a cut stream takes an upstream out of rotation until a health check passes.
      body: JSON.stringify({ model: "alveare-quick", messages: [{ role: "user", content: "hi" }], stream: true }),
    });
    await cut.text();
    // A client that leaves while the upstream holds its answer: in flight until then, then aborted.
    fake.fault = "hold";
    const leaving = new AbortController();
    const left = fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ model: "alveare-pair", messages: [{ role: "user", content: "hi" }] }),
      signal: leaving.signal,
    }).catch(() => undefined);
    const sent = fake.requests.length;
    while (fake.requests.length === sent) await new Promise((r) => setTimeout(r, 10));
    const live = { upstream: fakeUrl, model: "m" };
    assert.equal(value(await samples(), "alveare_upstream_requests_in_flight", live), 1);
    leaving.abort();
    await left;
    let after = await samples();
    for (let i = 0; i < 100 && value(after, "alveare_upstream_requests_total", { ...live, outcome: "aborted" }) === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await samples();
    }
    fake.release();

    const count = (upstream: string, outcome: string): number => value(after, "alveare_upstream_requests_total", { upstream, model: "m", outcome });
    assert.deepEqual(
      Object.fromEntries(["ok", "http_error", "timeout", "connection_error", "bad_answer", "aborted"].map((o) => [o, count(fakeUrl, o)])),
      { ok: 2, http_error: 1, timeout: 1, connection_error: 0, bad_answer: 1, aborted: 1 },
    );
    assert.equal(count(deadUrl, "connection_error"), 1);
    assert.equal(count(deadUrl, "ok"), 0, "every outcome is exported, 0 included");
    assert.equal(value(after, "alveare_upstream_requests_in_flight", live), 0);
    // The timeout alone waited 0.3 s.
    assert.ok(value(after, "alveare_upstream_request_seconds_total", live) >= 0.3);
    // The same exchanges as a histogram per upstream: every one counted once, whatever its outcome.
    const histogram = "alveare_upstream_request_duration_seconds";
    const buckets = after.filter((s) => s.name === `${histogram}_bucket` && s.labels.upstream === fakeUrl);
    assert.deepEqual(
      buckets.map((s) => s.labels.le),
      [...["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5"], ...["5", "10", "30", "60", "120", "+Inf"]],
    );
    assert.deepEqual(
      buckets.map((s) => s.value),
      [...buckets.map((s) => s.value)].sort((a, b) => a - b),
      "cumulative",
    );
    assert.equal(value(after, `${histogram}_count`, live), 6);
    assert.equal(buckets.at(-1)!.value, 6);
    assert.ok(value(after, `${histogram}_bucket`, { ...live, le: "0.25" }) <= 5, "the 0.3 s timeout is over 0.25 s");
    assert.equal(value(after, `${histogram}_sum`, live), value(after, "alveare_upstream_request_seconds_total", live));
    assert.equal(value(after, `${histogram}_count`, { upstream: deadUrl, model: "m" }), 1);
    assert.equal(
      after.filter((s) => s.name === "alveare_upstream_requests_total" && s.labels.upstream === fakeUrl).length,
      6,
      "one series per outcome",
    );
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.ok(!text.includes(auth.authorization!.slice(7)) && !text.includes('"hi"'));
  });

  it("sums the load of engines that share a name (one upstream, different timeouts) in alveare_engine_sequences_busy", async () => {
    fake.fault = "hold";
    const sent = fake.requests.length;
    const asked = [chat("alveare-quick"), chat("alveare-patient"), chat("alveare-patient")];
    try {
      while (fake.requests.length < sent + 3) await new Promise((r) => setTimeout(r, 10));
      const now = await samples();
      assert.equal(value(now, "alveare_upstream_requests_in_flight", { upstream: fakeUrl, model: "m" }), 3);
      assert.equal(value(now, "alveare_engine_sequences_busy", { engine: `remote:${fakeUrl}#m` }), 3);
    } finally {
      fake.release();
      for (const r of await Promise.all(asked)) assert.equal(r.status, 200);
    }
  });
});
