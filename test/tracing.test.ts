import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { FLUSH_AT_SHUTDOWN_MS, tracingSdkLoaded, tracingWanted } from "../src/observability/tracing.js";
import { createKey, postJson, startTestServer } from "./helpers/fixtures.js";
import { HeldUpstream } from "./helpers/held-upstream.js";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
}
interface OtlpExport {
  resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
}

/** An OTLP/HTTP (JSON) receiver: collects every span posted to /v1/traces. */
class OtlpReceiver {
  readonly spans: OtlpSpan[] = [];
  private server: Server | undefined;
  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        if (req.url === "/v1/traces" && (req.headers["content-type"] ?? "").includes("json")) {
          const parsed = JSON.parse(body) as OtlpExport;
          for (const r of parsed.resourceSpans) for (const s of r.scopeSpans) this.spans.push(...s.spans);
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

const attribute = (span: OtlpSpan | undefined, key: string): unknown => {
  const value = span?.attributes?.find((a) => a.key === key)?.value;
  return value === undefined ? undefined : Object.values(value)[0];
};

describe("OpenTelemetry traces", () => {
  it("are off without OTEL_EXPORTER_OTLP_ENDPOINT: no SDK or exporter module is loaded", async () => {
    // Runs first in this file, before any traced server has loaded the SDK into the process.
    const server = await startTestServer({}, { env: {} });
    try {
      assert.equal(
        (await postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }))
          .status,
        200,
      );
      assert.equal(tracingSdkLoaded(), false);
    } finally {
      await server.close();
    }
  });

  it("stay off when the standard variables disable them, in any case", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" };
    assert.equal(tracingWanted(endpoint), true);
    assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" }), true);
    for (const off of ["true", "TRUE", "True", " true "]) assert.equal(tracingWanted({ ...endpoint, OTEL_SDK_DISABLED: off }), false, off);
    for (const on of ["false", "1", ""]) assert.equal(tracingWanted({ ...endpoint, OTEL_SDK_DISABLED: on }), true, on);
    assert.equal(tracingWanted({ ...endpoint, OTEL_TRACES_EXPORTER: "NONE" }), false);
    assert.equal(tracingWanted({}), false);
  });

  describe("with an OTLP endpoint", () => {
    const receiver = new OtlpReceiver();
    const upstream = new HeldUpstream(false);
    let endpoint: string;
    let upstreamUrl: string;
    before(async () => {
      endpoint = await receiver.start();
      upstreamUrl = await upstream.start();
    });
    after(async () => {
      await receiver.stop();
      await upstream.stop();
    });

    it("sends one trace per request continuing the incoming traceparent, with the steps as child spans", async () => {
      const server = await startTestServer(
        {
          specialists: { faraway: { description: "remote", system_prompt: "", remote: { base_url: upstreamUrl, model: "m" } } },
          plans: { big: { requests_per_minute: 1000, requests_per_month: 1000, specialists: "*" } },
        },
        { gated: true, env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } },
      );
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const callerSpan = "00f067aa0ba902b7";
      try {
        const { auth } = await createKey(server, "big");
        // The caller's vendor state rides along unchanged (W3C trace context), beside the traceparent we make.
        const headers = { ...auth, traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" };
        const remote = await postJson(
          `${server.url}/v1/chat/completions`,
          { model: "alveare-faraway", messages: [{ role: "user", content: "hi" }] },
          headers,
        );
        assert.equal(remote.status, 200);
        const local = await postJson(
          `${server.url}/v1/chat/completions`,
          { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 3 },
          headers,
        );
        assert.equal(local.status, 200);
        assert.equal(tracingSdkLoaded(), true);
      } finally {
        await server.close(); // flushes the batch to the receiver
      }
      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      const roots = spans.filter((s) => s.parentSpanId === callerSpan);
      assert.equal(roots.length, 2, "one server span per request, child of the caller's span");
      for (const root of roots) assert.equal(root.name, "POST /v1/chat/completions");
      const childrenOf = (root: OtlpSpan): string[] =>
        spans
          .filter((s) => s.parentSpanId === root.spanId)
          .map((s) => s.name)
          .sort();
      const [first, second] = roots.sort((a, b) => (childrenOf(a).includes("upstream") ? -1 : childrenOf(b).includes("upstream") ? 1 : 0));
      assert.deepEqual(childrenOf(first!), ["admission", "authentication", "metering", "upstream"]);
      assert.deepEqual(childrenOf(second!), ["admission", "authentication", "generation", "metering", "queue"]);
      const upstreamSpan = spans.find((s) => s.name === "upstream");
      assert.equal(attribute(upstreamSpan, "gen_ai.usage.input_tokens"), 3);
      assert.equal(attribute(upstreamSpan, "gen_ai.usage.output_tokens"), 2);
      const generated = attribute(
        spans.find((s) => s.name === "generation"),
        "gen_ai.usage.output_tokens",
      );
      assert.ok(typeof generated === "number" && generated > 0);
      // The upstream got the trace, as a child of the upstream span.
      assert.equal(upstream.headers.at(-1)?.traceparent, `00-${traceId}-${upstreamSpan!.spanId}-01`);
      assert.equal(upstream.headers.at(-1)?.tracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
      assert.equal(attribute(first, "http.response.status_code"), 200);
    });
  });

  it("follow OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, and stop the server at start on a value they cannot take", async () => {
    const receiver = new OtlpReceiver();
    const endpoint = await receiver.start();
    const chat = (server: { url: string }, headers: Record<string, string> = {}) =>
      postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }, headers);
    const sampledParent = (traceId: string) => ({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    try {
      const off = await startTestServer({}, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER: "always_off" } });
      try {
        assert.equal((await chat(off, sampledParent("1bf92f3577b34da6a3ce929d0e0e4736"))).status, 200);
      } finally {
        await off.close();
      }
      assert.equal(receiver.spans.length, 0, "always_off records nothing, a sampled caller included");

      // A ratio of 0 under a parent-based sampler: only the calls whose caller sampled them are traced.
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" };
      const ratio = await startTestServer({}, { env });
      try {
        assert.equal((await chat(ratio)).status, 200);
        assert.equal((await chat(ratio, sampledParent("2bf92f3577b34da6a3ce929d0e0e4736"))).status, 200);
      } finally {
        await ratio.close();
      }
      assert.ok(receiver.spans.length > 0);
      assert.deepEqual([...new Set(receiver.spans.map((span) => span.traceId))], ["2bf92f3577b34da6a3ce929d0e0e4736"]);

      for (const [bad, field] of [
        [{ OTEL_TRACES_SAMPLER: "sometimes" }, /configuration error at OTEL_TRACES_SAMPLER: must be one of always_on, /],
        [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "5%" }, /configuration error at OTEL_TRACES_SAMPLER_ARG: must be a ratio/],
      ] as const) {
        await assert.rejects(startTestServer({}, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, ...bad } }), field);
      }
    } finally {
      await receiver.stop();
    }
  });

  it("warn when the collector refuses the spans, which the SDK would drop without a word", async () => {
    const refusing = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(400, { "content-type": "text/plain" }).end("bad request"));
    });
    await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    try {
      const server = await startTestServer({}, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } });
      try {
        for (let i = 0; i < 2; i++) assert.equal((await fetch(`${server.url}/health`)).status, 200);
      } finally {
        await server.close(); // flushes the batch, which the collector refuses
      }
      const warnings = server.logs.records().filter((r) => r.component === "tracing");
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]!.level, 40);
      assert.equal(warnings[0]!.spans_dropped, 2);
      assert.match(String(warnings[0]!.msg), /^trace export failed: spans dropped/);
    } finally {
      await new Promise((resolve) => refusing.close(resolve));
    }
  });

  it("do not hold a stopping server past a moment when the collector accepts connections but never answers", async () => {
    const held: Socket[] = [];
    const silent = createNetServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const server = await startTestServer({}, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } });
    try {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2,
      });
      assert.equal(r.status, 200);
      const started = performance.now();
      await server.close(0); // nothing runs: only the spans' flush could hold it
      const took = performance.now() - started;
      assert.ok(took < FLUSH_AT_SHUTDOWN_MS + 1_500, `close took ${Math.round(took)} ms`);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
