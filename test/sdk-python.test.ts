import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { ChatCompletionRequestSchema } from "../src/api/schemas/chat-completions.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { createKey, flakySpecialist, SDK_TEST_PLANS, startTestServer, type TestServer } from "./helpers/fixtures.js";

const SDK_DIR = new URL("../../sdk/python/", import.meta.url).pathname;

/** Runs the Python SDK's unittest suite (standard library only) against a real server started here. */
describe("Python SDK", () => {
  const fake = new FakeUpstream();
  let server: TestServer;
  before(async () => {
    const base = await fake.start();
    fake.fault = "500";
    server = await startTestServer(
      {
        specialists: { flaky: flakySpecialist(base) },
        plans: SDK_TEST_PLANS,
      },
      { gated: true },
    );
  });
  after(async () => {
    await server.close();
    await fake.stop();
  });

  it("passes its unittest suite against a real alveare serve", async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ALVEARE_TEST_BASE_URL: server.url,
      PYTHONDONTWRITEBYTECODE: "1",
      // The chat parameters the server's request schema names, for the suite to check create() takes each.
      ALVEARE_TEST_CHAT_PARAMS: Object.keys(ChatCompletionRequestSchema.properties).join(","),
    };
    for (const [name, plan] of [
      ["pro", "professional"],
      ["solo", "solo"],
      ["burst", "burst"],
      // Its own burst key: the chat 429 test must not leave another test's rate-limit window full.
      ["chat_burst", "burst"],
      ["tiny", "tiny"],
    ] as const) {
      env[`ALVEARE_TEST_KEY_${name.toUpperCase()}`] = (await createKey(server, plan)).key;
    }
    delete env.ALVEARE_API_KEY;
    delete env.ALVEARE_BASE_URL;
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn("python3", ["-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"], { cwd: SDK_DIR, env });
      let output = "";
      child.stdout.on("data", (c: Buffer) => (output += c.toString()));
      child.stderr.on("data", (c: Buffer) => (output += c.toString()));
      child.on("exit", (exitCode) => resolve({ code: exitCode, output }));
    });
    assert.equal(code, 0, output);
    assert.match(output, /Ran \d+ tests/);
    assert.doesNotMatch(output, /skipped/);
  });
});
