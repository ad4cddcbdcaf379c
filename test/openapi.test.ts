import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { after, before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import type { FastifyInstance, RouteOptions } from "fastify";
import type { Browser } from "playwright-core";
import type { Static } from "@sinclair/typebox";
import type { ChatCompletion, ChatCompletionChunk, CreateEmbeddingResponse, Health, InferResponse, ModelList, Usage } from "../src/api/types.js";
import type { ErrorBody } from "../src/errors.js";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  CreateEmbeddingResponseSchema,
  ErrorBodySchema,
  HealthSchema,
  InferResponseSchema,
  ModelListSchema,
  UsageSchema,
} from "../src/api/schemas/responses.js";
import { openApiPath } from "../src/api/openapi.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { launchChromium, noChromium } from "./helpers/browser.js";
import { createKey, flakySpecialist, startTestServer, type TestServer } from "./helpers/fixtures.js";
import { watchCsp } from "./helpers/page-audit.js";

const ADMIN_TOKEN = "openapi-test-admin-token-0123456789abcdef";
const PLANS = {
  tight: { requests_per_minute: 1, requests_per_month: 1000, specialists: "*" },
  open: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" },
};

/** True only when A and B are the same type. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// The response schemas and the SDK's hand-written types must not drift apart: this fails to compile when they do.
const SCHEMAS_MATCH_SDK_TYPES: readonly true[] = [
  true satisfies Same<Static<typeof HealthSchema>, Health>,
  true satisfies Same<Static<typeof ModelListSchema>, ModelList>,
  true satisfies Same<Static<typeof InferResponseSchema>, InferResponse>,
  true satisfies Same<Static<typeof ChatCompletionSchema>, ChatCompletion>,
  true satisfies Same<Static<typeof ChatCompletionChunkSchema>, ChatCompletionChunk>,
  true satisfies Same<Static<typeof CreateEmbeddingResponseSchema>, CreateEmbeddingResponse>,
  true satisfies Same<Static<typeof UsageSchema>, Usage>,
  true satisfies Same<Static<typeof ErrorBodySchema>, ErrorBody>,
];
void SCHEMAS_MATCH_SDK_TYPES;

type Json = Record<string, unknown>;
interface Answer {
  status: number;
  contentType: string;
  text: string;
  json: unknown;
}

/** A parsed OpenAPI document, navigated by JSON pointer for `$ref`s. */
class OpenApiDocument {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, allowUnionTypes: true });
  private readonly compiled = new Map<object, ValidateFunction>();
  constructor(readonly doc: Json) {
    this.ajv.addFormat("date-time", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  }

  private resolve(node: unknown): Json {
    let value = node as Json;
    while (typeof value.$ref === "string") {
      value = value.$ref
        .slice(2)
        .split("/")
        .reduce<Json>((at, part) => at[part] as Json, this.doc);
      assert.ok(value !== undefined, "every $ref resolves");
    }
    return value;
  }

  /** The documented schema of `route`'s answer with this status and content type; fails when the document lacks it. */
  schemaOf(method: string, route: string, status: number, contentType: string): ValidateFunction {
    const operation = (this.doc.paths as Record<string, Json>)[openApiPath(route)]?.[method.toLowerCase()] as Json | undefined;
    assert.ok(operation !== undefined, `${method} ${route} is documented`);
    const response = (operation.responses as Json)[String(status)];
    assert.ok(response !== undefined, `${method} ${route} documents status ${status}`);
    const media = (this.resolve(response).content as Record<string, Json> | undefined)?.[contentType];
    assert.ok(media !== undefined, `${method} ${route} ${status} documents ${contentType}`);
    const schema = this.resolve(media.schema);
    let validate = this.compiled.get(schema);
    if (validate === undefined) this.compiled.set(schema, (validate = this.ajv.compile(schema)));
    return validate;
  }

  /** Asserts that a real answer of `route` matches what the document says of its status. */
  check(method: string, route: string, answer: Answer, expectedStatus: number): void {
    assert.equal(answer.status, expectedStatus, `${method} ${route}: ${answer.text.slice(0, 300)}`);
    const contentType = answer.contentType.split(";")[0]!.trim();
    if (contentType === "text/event-stream") {
      const validate = this.schemaOf(method, route, answer.status, contentType);
      const events = answer.text
        .split("\n\n")
        .filter((e) => e.startsWith("data: "))
        .map((e) => e.slice(6));
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(events.length >= 2, "at least one chunk before [DONE]");
      for (const event of events.slice(0, -1)) assert.ok(validate(JSON.parse(event)), `chunk ${event}: ${this.ajv.errorsText(validate.errors)}`);
      return;
    }
    const validate = this.schemaOf(method, route, answer.status, contentType);
    assert.ok(validate(answer.json), `${method} ${route} ${answer.status} ${answer.text.slice(0, 300)}: ${this.ajv.errorsText(validate.errors)}`);
  }
}

async function call(method: string, url: string, options: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Answer> {
  const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const response = await fetch(url, {
    method,
    body,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
  });
  const text = await response.text();
  const contentType = response.headers.get("content-type") ?? "";
  return { status: response.status, contentType, text, json: contentType.startsWith("application/json") ? JSON.parse(text) : text };
}

type Route = { method: string; url: string };

/**
 * Every route of every Fastify instance created while collecting, seen through
 * its onRoute hook, added as the instance is created (before any route).
 * Per instance, so a side listener (metrics) does not count as the public API.
 */
function collectRoutes(): { routesOf: (app: FastifyInstance) => Route[]; stop: () => void } {
  const routes = new Map<FastifyInstance, Route[]>();
  const onInstance = (message: unknown) => {
    const { fastify } = message as { fastify: FastifyInstance };
    const seen: Route[] = [];
    routes.set(fastify, seen);
    fastify.addHook("onRoute", (route: RouteOptions) => {
      for (const method of [route.method].flat()) seen.push({ method, url: route.url });
    });
  };
  subscribe("fastify.initialization", onInstance);
  return { routesOf: (app) => routes.get(app) ?? [], stop: () => unsubscribe("fastify.initialization", onInstance) };
}

describe("the OpenAPI document", () => {
  const upstream = new FakeUpstream();
  let server: TestServer;
  let registered: Route[];
  let api: OpenApiDocument;
  before(async () => {
    const base = await upstream.start();
    const collector = collectRoutes();
    try {
      server = await startTestServer(
        { plans: PLANS, specialists: { flaky: flakySpecialist(base) } },
        { gated: true, env: { ALVEARE_ADMIN_TOKEN: ADMIN_TOKEN } },
      );
    } finally {
      collector.stop();
    }
    registered = collector.routesOf(server.app);
    const answer = await call("GET", `${server.url}/openapi.json`);
    assert.equal(answer.status, 200);
    api = new OpenApiDocument(answer.json as Json);
  });
  after(async () => {
    await server?.close();
    await upstream.stop();
  });

  it("is served without a key and validates as OpenAPI 3.1", async () => {
    const validator = new Validator();
    const result = await validator.validate(api.doc);
    assert.deepEqual(result.errors ?? [], []);
    assert.equal(result.valid, true);
    assert.equal(validator.version, "3.1");
    assert.equal((api.doc.info as Json).title, "Alveare API");
  });

  it("documents every route the server registers (and nothing it does not)", () => {
    assert.ok(registered.length > 10, "the onRoute hook saw the routes");
    const gets = new Set(registered.filter((r) => r.method === "GET").map((r) => r.url));
    const served = registered
      // The dashboard and static files are pages, not API; OPTIONS is the CORS preflight; HEAD mirrors each GET.
      .filter((r) => !r.url.startsWith("/dashboard") && !r.url.startsWith("/docs/assets/") && r.url !== "/favicon.ico" && r.method !== "OPTIONS")
      .filter((r) => !(r.method === "HEAD" && gets.has(r.url)))
      .map((r) => `${r.method} ${openApiPath(r.url)}`);
    const paths = api.doc.paths as Record<string, Json>;
    const documented = Object.entries(paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
    for (const route of served) assert.ok(documented.includes(route), `${route} is in the document`);
    // /ready is documented for the readiness probe even where this build does not register it yet.
    const extra = documented.filter((route) => !served.includes(route) && route !== "GET /ready");
    assert.deepEqual(extra, [], "every documented route exists");
    for (const route of [
      "GET /v1/models",
      "POST /v1/infer",
      "POST /v1/chat/completions",
      "GET /v1/usage",
      "GET /health",
      "GET /ready",
      "POST /admin/api/accounts",
    ]) {
      assert.ok(documented.includes(route), route);
    }
  });

  it("names the Bearer schemes: API keys for /v1, the admin token for /admin/api", () => {
    const schemes = (api.doc.components as Json).securitySchemes as Record<string, Json>;
    assert.deepEqual([schemes.apiKey!.type, schemes.apiKey!.scheme], ["http", "bearer"]);
    assert.deepEqual([schemes.adminToken!.type, schemes.adminToken!.scheme], ["http", "bearer"]);
    const paths = api.doc.paths as Record<string, Record<string, Json>>;
    assert.deepEqual(paths["/v1/infer"]!.post!.security, [{ apiKey: [] }]);
    assert.deepEqual(paths["/admin/api/accounts"]!.get!.security, [{ adminToken: [] }, { operatorSession: [] }]);
    assert.deepEqual(paths["/health"]!.get!.security, []);
    const inferStatuses = Object.keys(paths["/v1/infer"]!.post!.responses as Json);
    assert.deepEqual(inferStatuses, ["200", "400", "401", "403", "408", "413", "429", "431", "500", "502", "503", "504"]);
  });

  it("states the reference's defaults (max_tokens 512, temperature 0.7, top_p 1, stream false)", () => {
    const schemas = (api.doc.components as Json).schemas as Record<string, { properties: Record<string, Json> }>;
    for (const name of ["InferRequest", "ChatCompletionRequest"]) {
      const properties = schemas[name]!.properties;
      assert.equal(properties.max_tokens!.default, 512, name);
      assert.equal(properties.temperature!.default, 0.7, name);
      assert.equal(properties.top_p!.default, 1, name);
    }
    assert.equal(schemas.ChatCompletionRequest!.properties.stream!.default, false);
  });

  it("describes the real answers of the public routes, successes and errors", async () => {
    const { auth } = await createKey(server, "open");
    const solo = await createKey(server, "solo");
    const tight = await createKey(server, "tight");
    const url = server.url;

    api.check("GET", "/health", await call("GET", `${url}/health`), 200);
    if (registered.some((r) => r.url === "/ready")) {
      const ready = await call("GET", `${url}/ready`);
      api.check("GET", "/ready", ready, ready.status === 503 ? 503 : 200);
    }
    api.check("GET", "/v1/models", await call("GET", `${url}/v1/models`, { headers: auth }), 200);
    api.check("GET", "/v1/models/{model}", await call("GET", `${url}/v1/models/alveare-chat`, { headers: auth }), 200);
    api.check("GET", "/v1/models/{model}", await call("GET", `${url}/v1/models/alveare-nothing`, { headers: auth }), 404);
    api.check("GET", "/v1/usage", await call("GET", `${url}/v1/usage`, { headers: auth }), 200);
    api.check(
      "POST",
      "/v1/infer",
      await call("POST", `${url}/v1/infer`, { headers: auth, body: { specialist: "classify", prompt: "I love it", max_tokens: 3 } }),
      200,
    );
    const chat = { model: "alveare-chat", messages: [{ role: "user", content: "Hello" }], max_tokens: 3 };
    api.check("POST", "/v1/chat/completions", await call("POST", `${url}/v1/chat/completions`, { headers: auth, body: chat }), 200);
    const stream = await call("POST", `${url}/v1/chat/completions`, {
      headers: auth,
      body: { ...chat, stream: true, stream_options: { include_usage: true } },
    });
    assert.match(stream.contentType, /^text\/event-stream/);
    api.check("POST", "/v1/chat/completions", stream, 200);

    api.check("POST", "/v1/infer", await call("POST", `${url}/v1/infer`, { headers: auth, body: "{not json" }), 400);
    api.check(
      "POST",
      "/v1/chat/completions",
      await call("POST", `${url}/v1/chat/completions`, { headers: auth, body: { model: "alveare-chat" } }),
      400,
    );
    api.check(
      "POST",
      "/v1/chat/completions",
      await call("POST", `${url}/v1/chat/completions`, { headers: auth, body: { ...chat, model: "alveare-nope" } }),
      400,
    );
    api.check("GET", "/v1/models", await call("GET", `${url}/v1/models`), 401);
    api.check("GET", "/v1/usage", await call("GET", `${url}/v1/usage`, { headers: { authorization: "Bearer alv_live_wrong" } }), 401);
    api.check("POST", "/v1/chat/completions", await call("POST", `${url}/v1/chat/completions`, { headers: solo.auth, body: chat }), 403);
    api.check(
      "POST",
      "/v1/infer",
      await call("POST", `${url}/v1/infer`, { headers: auth, body: { specialist: "classify", prompt: "x".repeat(server.config.bodyLimit + 1) } }),
      413,
    );
    const infer = { specialist: "classify", prompt: "hi", max_tokens: 1 };
    api.check("POST", "/v1/infer", await call("POST", `${url}/v1/infer`, { headers: tight.auth, body: infer }), 200);
    api.check("POST", "/v1/infer", await call("POST", `${url}/v1/infer`, { headers: tight.auth, body: infer }), 429);
    api.check("GET", "/v1/models", await call("GET", `${url}/v1/models`, { headers: { ...auth, "x-padding": "x".repeat(20_000) } }), 431);

    upstream.fault = "500";
    api.check("POST", "/v1/infer", await call("POST", `${url}/v1/infer`, { headers: auth, body: { specialist: "flaky", prompt: "hi" } }), 502);
    upstream.fault = "503";
    api.check("POST", "/v1/infer", await call("POST", `${url}/v1/infer`, { headers: auth, body: { specialist: "flaky", prompt: "hi" } }), 503);
    upstream.fault = "ok";

    api.check("GET", "/openapi.json", await call("GET", `${url}/openapi.json`), 200);
    api.check("GET", "/docs", await call("GET", `${url}/docs`), 200);
  });

  it("describes the real answers of the admin API, successes and errors", async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const url = `${server.url}/admin/api`;
    const created = await call("POST", `${url}/accounts`, { headers: admin, body: { name: "Docs Ltd", plan: "open" } });
    api.check("POST", "/admin/api/accounts", created, 201);
    const id = (created.json as { id: string }).id;
    api.check("GET", "/admin/api/accounts", await call("GET", `${url}/accounts`, { headers: admin }), 200);
    api.check("GET", "/admin/api/accounts/:id", await call("GET", `${url}/accounts/${id}`, { headers: admin }), 200);
    api.check("PATCH", "/admin/api/accounts/:id", await call("PATCH", `${url}/accounts/${id}`, { headers: admin, body: { plan: "solo" } }), 200);
    const key = await call("POST", `${url}/accounts/${id}/keys`, { headers: admin, body: { mode: "test", name: "ci" } });
    api.check("POST", "/admin/api/accounts/:id/keys", key, 201);
    api.check("POST", "/admin/api/accounts/:id/keys", await call("POST", `${url}/accounts/${id}/keys`, { headers: admin }), 201);
    api.check("GET", "/admin/api/accounts/:id/keys", await call("GET", `${url}/accounts/${id}/keys`, { headers: admin }), 200);
    const keyId = (key.json as { id: string }).id;
    api.check("POST", "/admin/api/keys/:id/revoke", await call("POST", `${url}/keys/${keyId}/revoke`, { headers: admin }), 200);
    api.check(
      "POST",
      "/admin/api/accounts/:id/invitations",
      await call("POST", `${url}/accounts/${id}/invitations`, { headers: admin, body: { email: "ada@example.com" } }),
      201,
    );
    api.check("GET", "/admin/api/accounts/:id/members", await call("GET", `${url}/accounts/${id}/members`, { headers: admin }), 200);
    api.check("GET", "/admin/api/accounts/:id/usage", await call("GET", `${url}/accounts/${id}/usage?mode=test`, { headers: admin }), 200);
    api.check(
      "GET",
      "/admin/api/accounts/:id/usage/breakdown",
      await call("GET", `${url}/accounts/${id}/usage/breakdown?period=2026-01`, { headers: admin }),
      200,
    );

    api.check(
      "POST",
      "/admin/api/accounts",
      await call("POST", `${url}/accounts`, { headers: admin, body: { name: "x", plan: "no-such-plan" } }),
      400,
    );
    api.check("GET", "/admin/api/accounts/:id/usage", await call("GET", `${url}/accounts/${id}/usage?mode=both`, { headers: admin }), 400);
    api.check("GET", "/admin/api/accounts/:id", await call("GET", `${url}/accounts/acct_missing`, { headers: admin }), 404);
    api.check(
      "PATCH",
      "/admin/api/accounts/:id",
      await call("PATCH", `${url}/accounts/acct_missing`, { headers: admin, body: { status: "suspended" } }),
      404,
    );
    api.check("GET", "/admin/api/accounts", await call("GET", `${url}/accounts`), 401);
    api.check("GET", "/admin/api/accounts", await call("GET", `${url}/accounts`, { headers: { authorization: "Bearer wrong" } }), 401);
    api.check(
      "POST",
      "/admin/api/accounts",
      await call("POST", `${url}/accounts`, { headers: admin, body: { name: "x".repeat(server.config.bodyLimit), plan: "open" } }),
      413,
    );

    // A suspended account's key is refused with 403 on every /v1 route.
    const member = await createKey(server, "open");
    api.check(
      "PATCH",
      "/admin/api/accounts/:id",
      await call("PATCH", `${server.url}/admin/api/accounts/${member.accountId}`, { headers: admin, body: { status: "suspended" } }),
      200,
    );
    api.check("GET", "/v1/models", await call("GET", `${server.url}/v1/models`, { headers: member.auth }), 403);
    api.check("POST", "/admin/api/accounts/:id/keys", await call("POST", `${url}/accounts/${member.accountId}/keys`, { headers: admin }), 403);
  });

  it("renders at /docs under the dashboard's content security policy", { skip: noChromium }, async () => {
    const docs = await call("GET", `${server.url}/docs`);
    assert.match(docs.text, /<script src="\/docs\/assets\/swagger-ui-bundle\.js">/);
    assert.doesNotMatch(docs.text, /<script>|<style|style="|https?:\/\//, "no inline script or style, nothing from another origin");
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const page = await browser.newPage();
      const violations = watchCsp(page);
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      // A failed request (a 404 for /favicon.ico) is an error in the console too.
      const consoleErrors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(`${message.text()} (${message.location().url})`);
      });
      const foreign: string[] = [];
      page.on("request", (request) => {
        if (!request.url().startsWith(server.url) && !request.url().startsWith("data:")) foreign.push(request.url());
      });
      const response = await page.goto(`${server.url}/docs`);
      assert.match(response?.headers()["content-security-policy"] ?? "", /script-src 'self'; style-src 'self'/);
      await page.locator(".info .title", { hasText: "Alveare API" }).waitFor({ timeout: 30_000 });
      await page.locator(".opblock-summary-path", { hasText: "/v1/chat/completions" }).first().waitFor({ timeout: 10_000 });
      // Opening an operation renders its schemas (and the syntax-highlighted examples).
      await page.locator(".opblock-summary-path", { hasText: "/v1/infer" }).first().click();
      await page.locator(".opblock-body").first().waitFor({ timeout: 10_000 });
      assert.deepEqual(violations, []);
      assert.deepEqual(pageErrors, []);
      assert.deepEqual(consoleErrors, []);
      assert.equal(await page.evaluate("document.querySelector('link[rel=icon]').href"), `${server.url}/favicon.ico`);
      // The icon answers, so neither this page nor the document itself opened in a browser logs a failed request for it.
      assert.equal(await page.evaluate("fetch('/favicon.ico').then((r) => `${r.status} ${r.headers.get('content-type')}`)"), "200 image/svg+xml");
      await page.goto(`${server.url}/openapi.json`);
      await page.waitForLoadState("load");
      assert.deepEqual(consoleErrors, []);
      assert.deepEqual(foreign, []);
    } finally {
      await browser?.close();
    }
  });
});
