import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium, noChromium } from "./helpers/browser.js";
import { createKey, startTestServer, type TestServer } from "./helpers/fixtures.js";

const SDK_DIST = new URL("../../sdk/typescript/dist/", import.meta.url);

/** The TypeScript SDK's built ESM, unchanged, running in a real browser against a real server. */
describe("TypeScript SDK in a browser", { skip: noChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  before(async () => {
    server = await startTestServer({}, { gated: true });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("calls the API with fetch, streams, and raises typed errors", async () => {
    const { key } = await createKey(server, "professional");
    const page = await browser.newPage();
    // Serve the built SDK and a bare page from the API's own origin, so fetch needs no CORS.
    await page.route(`${server.url}/sdk-check/**`, (route) => {
      const name = new URL(route.request().url()).pathname.replace("/sdk-check/", "");
      if (name === "page.html") return route.fulfill({ contentType: "text/html", body: "<!doctype html><title>sdk</title>" });
      return route.fulfill({ contentType: "text/javascript", body: readFileSync(new URL(name, SDK_DIST)) });
    });
    await page.goto(`${server.url}/sdk-check/page.html`);
    const result = (await page.evaluate(`(async () => {
      const { Alveare, BadRequestError } = await import("/sdk-check/index.js");
      const client = new Alveare({ apiKey: ${JSON.stringify(key)}, baseURL: location.origin });
      const inferred = await client.infer({ specialist: "classify", prompt: "I love it", max_tokens: 8 });
      const stream = await client.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 4, stream: true, stream_options: { include_usage: true } });
      let chunks = 0, usage = null;
      for await (const chunk of stream) { chunks++; usage = chunk.usage ?? usage; }
      let error = null;
      try { await client.infer({ specialist: "classify", prompt: "x", temperature: 9 }); } catch (e) { error = { bad: e instanceof BadRequestError, param: e.param, requestId: e.requestId }; }
      const models = await client.models.list();
      // Same-origin apps: "" is the page's origin, a relative baseURL is resolved against the page.
      const sameOrigin = [];
      for (const baseURL of ["", "/v1"]) {
        const relative = new Alveare({ apiKey: ${JSON.stringify(key)}, baseURL });
        sameOrigin.push([relative.baseURL === location.origin, (await relative.models.list()).data.length]);
      }
      return { label: inferred.result, chunks, completion: usage && usage.completion_tokens, error, models: models.data.length, sameOrigin };
    })()`)) as {
      label: string;
      chunks: number;
      completion: number;
      error: { bad: boolean; param: string; requestId: string };
      models: number;
      sameOrigin: Array<[boolean, number]>;
    };
    assert.ok(["positive", "negative", "neutral"].includes(result.label));
    assert.ok(result.chunks >= 3);
    assert.ok(result.completion >= 1 && result.completion <= 4);
    assert.deepEqual({ bad: result.error.bad, param: result.error.param }, { bad: true, param: "temperature" });
    assert.match(result.error.requestId, /^req_/);
    assert.equal(result.models, 7); // the six specialists and alveare-embed
    assert.deepEqual(result.sameOrigin, [
      [true, 7],
      [true, 7],
    ]);
  });
});
