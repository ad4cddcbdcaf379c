import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { createLogger, logOutputFor } from "../src/logger.js";
import Database from "better-sqlite3";
import { databasePath } from "../src/config/config.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { freePort } from "./helpers/held-upstream.js";
import { createStore } from "../src/store/create-store.js";
import { createKey, LogCapture, postJson, spawnServe, startTestServer, tempDir, tinyModel, type TestServer } from "./helpers/fixtures.js";
import { until } from "./helpers/until.js";

const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0", ...extra };
  for (const name of ["ALVEARE_MODEL", "ALVEARE_CONFIG", "ALVEARE_PUBLIC_URL", "ALVEARE_ADMIN_TOKEN", "ALVEARE_LOG_FORMAT"]) {
    if (!(name in extra)) delete env[name];
  }
  return env;
};

const stop = async (child: ChildProcess): Promise<void> => {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
};

describe("request log lines", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(
      {
        plans: {
          minute: { requests_per_minute: 1, requests_per_month: 1000, specialists: "*" },
          month: { requests_per_minute: 100, requests_per_month: 1, specialists: "*" },
        },
      },
      { gated: true },
    );
  });
  after(() => server.close());

  it("carry the error code, account id, key id and client address, and never the key", async () => {
    const minute = await createKey(server, "minute");
    const month = await createKey(server, "month");
    const infer = (auth: Record<string, string>) => postJson(`${server.url}/v1/infer`, { specialist: "chat", prompt: "hi", max_tokens: 1 }, auth);
    assert.equal((await infer(minute.auth)).status, 200);
    assert.equal((await infer(minute.auth)).status, 429);
    assert.equal((await infer(month.auth)).status, 200);
    assert.equal((await infer(month.auth)).status, 429);
    const bogus = "alv_live_0000000000000000000000000000000000000000";
    assert.equal((await infer({ authorization: `Bearer ${bogus}` })).status, 401);
    // A key pasted into a path (a 404) is logged cut to its prefix.
    const notFound = await fetch(`${server.url}/v1/${minute.key}/x?k=${month.key}`);
    assert.equal(notFound.status, 404);
    assert.match(((await notFound.json()) as { error: { message: string } }).error.message, /^Unknown route: GET \/v1\/alv_live_…\/x$/);
    const pasted = await until("the 404's line", () => server.logs.requests().find((r) => r.status === 404));
    assert.equal(pasted.route, "/v1/alv_live_…/x?[redacted]");
    // Spelled with percent-escapes, it is still a key: logged and echoed cut to its prefix.
    const escaped = `%61${minute.key.slice(1, 9)}%${minute.key.charCodeAt(9).toString(16)}${minute.key.slice(10)}`;
    const escapedNotFound = await fetch(`${server.url}/v1/${escaped}/y`);
    assert.equal(escapedNotFound.status, 404);
    assert.match(((await escapedNotFound.json()) as { error: { message: string } }).error.message, /^Unknown route: GET \/v1\/alv_live_…\/y$/);
    const escapedLine = await until("the escaped 404's line", () =>
      server.logs.requests().find((r) => r.status === 404 && String(r.route).endsWith("/y")),
    );
    assert.equal(escapedLine.route, "/v1/alv_live_…/y");
    // Nor does a hint that echoes the path (here the route without its trailing slash) show any of it.
    const hinted = await fetch(`${server.url}/v1/models/${escaped}/`);
    const hint = ((await hinted.json()) as { error: { message: string } }).error.message;
    assert.match(hint, /did you mean \/v1\/models\/alv_live_…\?|without the trailing|\/v1\/models\/alv_live_…/);
    assert.ok(!hint.includes(minute.key.slice(10, 18)) && !hint.includes("%61"), hint);

    const lines = await until("five request lines", () => {
      const found = server.logs.requests().filter((r) => r.route === "/v1/infer");
      return found.length >= 5 ? found : undefined;
    });
    const refused = lines.filter((l) => l.status === 429);
    assert.deepEqual(
      refused.map((l) => [l.code, l.account_id, l.key_id]).sort(),
      [
        ["monthly_quota_exceeded", month.accountId, month.keyId],
        ["rate_limit_exceeded", minute.accountId, minute.keyId],
      ].sort(),
      "a minute-limit 429 and a quota 429 differ by code",
    );
    const served = lines.filter((l) => l.status === 200);
    assert.equal(served.length, 2);
    for (const l of served) {
      assert.equal(l.code, undefined, "a success has no error code");
      assert.match(String(l.key_id), /^key_/);
    }
    const unauthenticated = lines.find((l) => l.status === 401)!;
    assert.equal(unauthenticated.code, "invalid_api_key");
    assert.equal(unauthenticated.key_id, undefined);
    for (const l of lines) assert.equal(l.client_ip, "127.0.0.1");
    for (const text of server.logs.lines) {
      for (const secret of [minute.key, month.key, bogus]) assert.equal(text.includes(secret), false, `a key leaked into the log: ${text}`);
    }
  });

  it("name the account and key of a found key the gate refuses: revoked, its account suspended, or on a plan gone", async () => {
    const revoked = await createKey(server, "month");
    const suspended = await createKey(server, "month");
    const planGone = await createKey(server, "month");
    const stores = await createStore(server.config);
    try {
      await stores.accounts.revokeKey(revoked.keyId, new Date().toISOString());
      await stores.accounts.updateAccount(suspended.accountId, { status: "suspended" });
      await stores.accounts.updateAccount(planGone.accountId, { plan: "retired" });
    } finally {
      await stores.close();
    }
    const codes: string[] = [];
    for (const k of [revoked, suspended, planGone]) {
      const answer = await fetch(`${server.url}/v1/models`, { headers: k.auth });
      codes.push(((await answer.json()) as { error: { code: string } }).error.code);
    }
    assert.deepEqual(codes, ["revoked_api_key", "account_suspended", "specialist_not_in_plan"]);
    const lines = await until("three lines of refused keys", () => {
      const found = server.logs.requests().filter((r) => r.route === "/v1/models" && r.status !== 200);
      return found.length >= 3 ? found : undefined;
    });
    assert.deepEqual(
      lines.map((l) => [l.code, l.account_id, l.key_id]).sort(),
      [
        ["revoked_api_key", revoked.accountId, revoked.keyId],
        ["account_suspended", suspended.accountId, suspended.keyId],
        ["specialist_not_in_plan", planGone.accountId, planGone.keyId],
      ].sort(),
    );
    for (const text of server.logs.lines) {
      for (const k of [revoked, suspended, planGone]) assert.equal(text.includes(k.key), false, `a key leaked into the log: ${text}`);
    }
  });

  it("never carry the admin token a client pasted as its request id or into a path, nor echo it", async () => {
    const token = `operator-${"T".repeat(40)}`;
    const operated = await startTestServer({}, { gated: true, env: { ALVEARE_ADMIN_TOKEN: token } });
    try {
      const pasted = await fetch(`${operated.url}/health`, { headers: { "x-request-id": token } });
      assert.equal(pasted.status, 200);
      const id = pasted.headers.get("x-request-id") ?? "";
      assert.match(id, /^req_[A-Za-z0-9]{20}$/, "an id holding the admin token is replaced by one of ours");
      assert.equal((await fetch(`${operated.url}/admin/api/${token}/x?t=1`)).status, 404);
      const lines = await until("both lines", () => {
        const found = operated.logs.requests();
        return found.length >= 2 ? found : undefined;
      });
      assert.ok(lines.some((l) => l.request_id === id));
      assert.ok(lines.some((l) => l.route === "/admin/api/[the admin token]/x?[redacted]"));
      for (const text of operated.logs.lines) assert.equal(text.includes(token), false, `the admin token leaked into the log: ${text}`);
    } finally {
      await operated.close();
    }
  });

  it("cut an unknown URL's path to 512 characters, so a client cannot make each of its lines kilobytes long", async () => {
    const path = `/nowhere/${"x".repeat(10_000)}`;
    const response = await fetch(`${server.url}${path}`);
    assert.equal(response.status, 404);
    const id = response.headers.get("x-request-id");
    const line = await until("the long path's line", () => server.logs.requests().find((r) => r.request_id === id));
    assert.equal(line.route, `${path.slice(0, 512)}…`);
  });

  it("include a request whose URL is malformed, answered before any route: its line carries the id its response gave", async () => {
    const malformed = await fetch(`${server.url}/v1/infer%zz`, { method: "POST", body: "{}" });
    assert.equal(malformed.status, 400);
    const id = malformed.headers.get("x-request-id");
    assert.match(id ?? "", /^req_/);
    const line = await until("the malformed URL's line", () => server.logs.requests().find((r) => r.request_id === id));
    assert.equal(line.status, 400);
    assert.equal(line.code, "invalid_request");
    assert.equal(line.method, "POST");
  });
});

describe("log format", () => {
  it("is pretty in a terminal and JSON otherwise, unless ALVEARE_LOG_FORMAT chooses", () => {
    assert.equal(logOutputFor("auto", true), "pretty");
    assert.equal(logOutputFor("auto", false), "json");
    assert.equal(logOutputFor("json", true), "json");
    assert.equal(logOutputFor("pretty", false), "pretty");
  });

  it("pretty lines read as a sentence and still redact credentials", () => {
    const capture = new LogCapture();
    const logger = createLogger("info", capture, "pretty");
    logger.info(
      {
        method: "POST",
        route: "/v1/infer",
        status: 429,
        latency_ms: 1.5,
        code: "rate_limit_exceeded",
        account_id: "acct_1",
        key_id: "key_1",
        client_ip: "10.1.2.3",
      },
      "request",
    );
    logger.info({ key: "alv_live_secret" }, "made a key");
    const [request, key] = capture.lines;
    assert.throws(() => JSON.parse(request!) as unknown);
    assert.match(
      request!,
      /INFO: POST \/v1\/infer 429 rate_limit_exceeded 1\.5ms \{"account_id":"acct_1","key_id":"key_1","client_ip":"10\.1\.2\.3"\}$/,
    );
    assert.match(key!, /made a key/);
    assert.equal(key!.includes("alv_live_secret"), false);
  });

  it("a served process logs JSON start-up lines when its output is not a terminal, pretty ones with ALVEARE_LOG_FORMAT=pretty", async () => {
    const model = await tinyModel();
    const token = "t".repeat(40);
    const json = await spawnServe(
      ["--model", model, "--data-dir", tempDir()],
      cleanEnv({ ALVEARE_ADMIN_TOKEN: token, ALVEARE_PUBLIC_URL: "https://ai.example.com" }),
    );
    try {
      const records = await until("the start-up lines", () => {
        const parsed = json
          .output()
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        return parsed.some((r) => r.operator_dashboard !== undefined) ? parsed : undefined;
      });
      const serving = records.find((r) => r.url !== undefined)!;
      assert.equal(serving.url, json.url);
      assert.equal(records.find((r) => r.dashboard_url !== undefined)?.dashboard_url, "https://ai.example.com/dashboard/");
      assert.match(String(records.find((r) => r.database !== undefined)?.database), /alveare\.db$/);
      assert.equal(records.find((r) => r.operator_dashboard !== undefined)?.operator_dashboard, true);
      assert.equal(json.output().includes(token), false);
    } finally {
      await stop(json.child);
    }
    const pretty = await spawnServe(["--model", model, "--data-dir", tempDir()], cleanEnv({ ALVEARE_LOG_FORMAT: "pretty" }));
    try {
      const text = await until("the start-up lines", () => (/operator dashboard off/.test(pretty.output()) ? pretty.output() : undefined));
      // The start-up line names the server's pid (README: Shutdown), readable here as in JSON.
      assert.match(
        text,
        new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] INFO \\(${String(pretty.child.pid)}\\): alveare is serving at http://127\\.0\\.0\\.1:\\d+ `, "m"),
      );
      // Other lines carry no pid, so they read as before.
      assert.match(text, /^\[\d\d:\d\d:\d\d\] INFO: dashboard at http:\/\/127\.0\.0\.1:\d+\/dashboard\//m);
      assert.match(text, /INFO: operator dashboard off: set ALVEARE_ADMIN_TOKEN to turn it on/);
      assert.throws(() => JSON.parse(text.split("\n")[0]!) as unknown);
    } finally {
      await stop(pretty.child);
    }
    // Listening on every address, the server is reached (and its dashboard linked) as localhost, as invitation links are.
    const everywhere = await spawnServe(["--model", model, "--data-dir", tempDir(), "--host", "0.0.0.0"], cleanEnv({ ALVEARE_LOG_FORMAT: "pretty" }));
    try {
      const text = await until("the start-up lines", () => (/operator dashboard off/.test(everywhere.output()) ? everywhere.output() : undefined));
      assert.match(text, /INFO: dashboard at http:\/\/localhost:\d+\/dashboard\//);
    } finally {
      await stop(everywhere.child);
    }
  });
});

describe("a stream that fails after its first event", () => {
  let server: TestServer;
  let upstream: FakeUpstream;
  let auth: Record<string, string>;
  before(async () => {
    upstream = new FakeUpstream();
    const url = await upstream.start();
    server = await startTestServer(
      { specialists: { far: { description: "remote", system_prompt: "", remote: { base_url: url, model: "m" } } } },
      { gated: true },
    );
    auth = (await createKey(server, "professional")).auth;
  });
  after(async () => {
    await server?.close();
    await upstream?.stop();
  });

  const stream = (model: string) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 5, stream: true }),
    });

  it("has the error's code on its request line, though its status went out as 200", async () => {
    upstream.fault = "cut-stream";
    const r = await stream("alveare-far");
    assert.equal(r.status, 200);
    assert.match(await r.text(), /"code":"upstream_error"/);
    const id = r.headers.get("x-request-id");
    const line = await until("the stream's line", () => server.logs.requests().find((l) => l.request_id === id));
    assert.equal(line.status, 200);
    assert.equal(line.code, "upstream_error");
  });

  it("logs a bug that ends it (here the ledger's write failing) with the request id, as a 500 is", async () => {
    // A real failure of the real SQLite file: the request's usage record cannot be finished.
    const db = new Database(databasePath(server.config));
    db.exec("CREATE TRIGGER fail_finish BEFORE UPDATE ON usage_events BEGIN SELECT RAISE(ABORT, 'finish refused by the test'); END");
    try {
      const r = await stream("alveare-chat");
      assert.equal(r.status, 200);
      assert.match(await r.text(), /"code":"internal_error"/);
      const id = r.headers.get("x-request-id");
      const line = await until("the stream's line", () => server.logs.requests().find((l) => l.request_id === id));
      assert.equal(line.code, "internal_error");
      const logged = server.logs.records().find((l) => l.request_id === id && l.level === 50);
      assert.ok(logged, "the error is logged");
      assert.match(JSON.stringify(logged.err), /finish refused by the test/);
    } finally {
      db.exec("DROP TRIGGER fail_finish");
      db.close();
    }
  });
});

describe("requests refused at the socket, before any route", () => {
  let server: TestServer;
  let metricsPort: number;
  before(async () => {
    metricsPort = await freePort();
    server = await startTestServer(
      {},
      { env: { ALVEARE_METRICS_PORT: String(metricsPort), ALVEARE_REQUEST_TIMEOUT_MS: "600", ALVEARE_HEADERS_TIMEOUT_MS: "300" } },
    );
  });
  after(() => server.close());

  /** Sends raw bytes and returns the status line and request id of the answer. */
  const raw = (text: string): Promise<{ status: string; id: string | undefined }> =>
    new Promise((resolve) => {
      const socket = connect(Number(new URL(server.url).port), "127.0.0.1", () => text !== "" && socket.write(text));
      let got = "";
      socket.on("data", (d: Buffer) => (got += d.toString()));
      socket.on("close", () => resolve({ status: got.split("\r\n")[0] ?? "", id: /x-request-id: (\S+)/.exec(got)?.[1] }));
    });
  const unmatched = async (status: number): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Number(new RegExp(`^alveare_http_requests_total\\{route="unmatched",status="${status}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  };

  it("have one request line with the catalogue code and Node's reason, and are counted under unmatched", async () => {
    const before = { 400: await unmatched(400), 408: await unmatched(408), 431: await unmatched(431) };
    const cases = [
      { text: "FOO /health HTTP/1.1\r\nHost: x\r\n\r\n", status: 400, code: "invalid_request", reason: "HPE_INVALID_METHOD" },
      { text: `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, status: 431, code: "request_header_fields_too_large" },
      { text: "GET /health HTTP/1.1\r\nHost: x\r\n", status: 408, code: "request_timeout", reason: "ERR_HTTP_REQUEST_TIMEOUT" },
    ];
    for (const c of cases) {
      const answer = await raw(c.text);
      assert.match(answer.status, new RegExp(`^HTTP/1.1 ${c.status} `));
      const lines = await until(`the ${c.status}'s line`, () => {
        const found = server.logs.records().filter((r) => r.request_id === answer.id);
        return found.length > 0 ? found : undefined;
      });
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0]!.msg, "request");
      assert.equal(lines[0]!.status, c.status);
      assert.equal(lines[0]!.code, c.code);
      if (c.reason !== undefined) assert.equal(lines[0]!.reason, c.reason);
      assert.equal(lines[0]!.client_ip, "127.0.0.1");
      assert.equal((await unmatched(c.status)) - before[c.status as 400 | 408 | 431], 1);
    }
  });

  it("leave a routed request with its one line, and count no request for a connection that sent nothing", async () => {
    const before = await unmatched(408);
    const slowBody = await raw("POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    assert.match(slowBody.status, /^HTTP\/1.1 408 /);
    const lines = await until("the slow body's line", () => {
      const found = server.logs.records().filter((r) => r.request_id === slowBody.id);
      return found.some((r) => r.msg === "request") ? found : undefined;
    });
    assert.deepEqual(
      lines.map((l) => [l.msg, l.route, l.code]),
      [["request", "/v1/infer", "request_timeout"]],
    );
    const silent = await raw("");
    assert.match(silent.status, /^HTTP\/1.1 408 /);
    assert.equal(await unmatched(408), before, "a preconnect that timed out is no request");
  });
});
