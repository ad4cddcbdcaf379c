import assert from "node:assert/strict";
import { closedPort } from "./helpers/ports.js";
import { spawn } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChatCompletionRequestSchema } from "../src/api/schemas/chat-completions.js";
import { FakeUpstream } from "./helpers/fake-upstream.js";
import { createKey, flakySpecialist, startTestServer, tempDir, type TestServer } from "./helpers/fixtures.js";

const TS_SDK = new URL("../../sdk/typescript/", import.meta.url).pathname;
const PY_SDK = new URL("../../sdk/python/", import.meta.url).pathname;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without blocking the event loop (the server under test lives in this process). */
function run(command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", (error) => resolve({ code: null, stdout, stderr: `${stderr}${error.message}` }));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const succeeded = (what: string, r: Ran): Ran => {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  return r;
};

/** The first Python that can build a wheel offline: it needs pip, setuptools and wheel installed. */
async function pythonThatBuildsWheels(): Promise<string | undefined> {
  for (const candidate of ["python3", "/usr/bin/python3", "python"]) {
    const probe = await run(candidate, ["-c", "import setuptools, wheel, pip"], { cwd: PY_SDK });
    if (probe.code === 0) return candidate;
  }
  return undefined;
}

/** What each installed package's script checks, printed as one JSON line. */
const JS_CHECK = `
import { Alveare, APIConnectionError, AuthenticationError, MissingApiKeyError } from "@alveare/sdk";
const out = {};
const client = new Alveare();
out.baseURL = client.baseURL;
out.health = (await client.health()).status;
out.inferId = (await client.infer({ specialist: "classify", prompt: "I love it", max_tokens: 4 })).id;
const retries = [];
const flaky = new Alveare({ maxRetries: 1, onRetry: (e) => retries.push([e.attempt, e.error.name, e.error.status]) });
out.flaky = await flaky.infer({ specialist: "flaky", prompt: "x" }).then(() => "answered", (e) => e.name + " " + e.status);
out.retries = retries;
try { new Alveare({ apiKey: "" }); } catch (e) { out.missingKey = [e.name, e instanceof MissingApiKeyError, e instanceof AuthenticationError]; }
const chat = await client.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "hi", name: "ada" }],
  max_tokens: 2, user: "u-1", store: false, metadata: { team: "bees" }, frequency_penalty: 0, logit_bias: { "1": 0 } });
out.chat = [chat.object, typeof chat._request_id === "string" && chat._request_id.startsWith("req_")];
out.wrongType = await client.chat.completions.create({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], user: 42 })
  .then(() => "answered", (e) => [e.name, e.status, e.code, e.param, /^req_/.test(e.requestId)]);
out.refused = await new Alveare({ baseURL: "http://127.0.0.1:" + process.argv[2], maxRetries: 0 }).health()
  .then(() => "answered", (e) => (e instanceof APIConnectionError ? "" : "not an APIConnectionError: ") + String(e));
console.log(JSON.stringify(out));
`;

const PY_CHECK = `
import json, os, sys
import alveare
from alveare import Alveare
out = {"file": alveare.__file__}
c = Alveare()
out["baseURL"] = c.base_url
out["health"] = c.health().status
inferred = c.infer(specialist="classify", prompt="I love it", max_tokens=4)
out["inferId"] = inferred.id if inferred["id"] == inferred.id else None
retries = []
try:
    Alveare(max_retries=1, on_retry=lambda e: retries.append([e.attempt, type(e.error).__name__, e.error.status])).infer(specialist="flaky", prompt="x")
    out["flaky"] = "answered"
except alveare.InternalServerError as e:
    out["flaky"] = "InternalServerError %d" % e.status
out["retries"] = retries
chat = c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi", "name": "ada"}],
    max_tokens=2, user="u-1", store=False, metadata={"team": "bees"}, frequency_penalty=0, logit_bias={"1": 0})
out["chat"] = [chat.object, chat._request_id.startswith("req_")]
try:
    c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], user=42)
    out["wrongType"] = "answered"
except alveare.APIError as e:
    out["wrongType"] = [type(e).__name__, e.status, e.code, e.param, e.request_id.startswith("req_")]
try:
    c.infer(specialist="classify", prompt="x", maxtokens=1)
except TypeError as e:
    out["typo"] = str(e)
try:
    Alveare(base_url="http://127.0.0.1:" + sys.argv[1], max_retries=0).health()
except alveare.APIConnectionError as e:
    out["refused"] = "%s: %s" % (type(e).__name__, e)
del os.environ["ALVEARE_API_KEY"]
try:
    Alveare()
except alveare.MissingApiKeyError as e:
    out["missingKey"] = [type(e).__name__, True, isinstance(e, alveare.AuthenticationError)]
print(json.dumps(out))
`;

/**
 * The SDKs as users get them: the npm tarball and the Python wheel, each installed
 * into an empty directory outside the repository and run against a real server,
 * with ALVEARE_LOG=debug so the log lines are checked too.
 */
describe("SDK packages installed in a clean directory", () => {
  const fake = new FakeUpstream();
  const scratch: string[] = [];
  let server: TestServer;
  let key: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    const base = await fake.start();
    fake.fault = "500";
    server = await startTestServer({ specialists: { flaky: flakySpecialist(base) } }, { gated: true });
    key = (await createKey(server, "professional")).key;
    env = { ...process.env, ALVEARE_API_KEY: key, ALVEARE_BASE_URL: `${server.url}/v1`, ALVEARE_LOG: "debug" };
  });
  after(async () => {
    await server?.close();
    await fake.stop();
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });
  const scratchDir = (prefix: string): string => {
    const dir = tempDir(prefix);
    scratch.push(dir);
    return dir;
  };

  /** What both scripts must report and log, whichever language. */
  function assertBehaves(out: Record<string, unknown>, stderr: string, port: number): void {
    assert.equal(out.baseURL, server.url, "the trailing /v1 of ALVEARE_BASE_URL is dropped");
    assert.equal(out.health, "ok");
    assert.match(String(out.inferId), /^inf-/);
    assert.deepEqual(out.chat, ["chat.completion", true], "OpenAI's checked-then-ignored chat parameters are taken");
    assert.deepEqual(out.wrongType, ["BadRequestError", 400, "invalid_parameter", "user", true]);
    assert.equal(out.flaky, "InternalServerError 502");
    assert.deepEqual(out.retries, [[1, "InternalServerError", 502]]);
    assert.deepEqual(out.missingKey, ["MissingApiKeyError", true, true]);
    assert.equal(out.refused, `APIConnectionError: could not connect to 127.0.0.1:${port} (ECONNREFUSED)`);
    assert.match(stderr, new RegExp(`^\\[alveare\\] GET ${server.url}/health -> 200 in \\d+ ms \\(req_\\w+\\)$`, "m"));
    assert.match(stderr, new RegExp(`^\\[alveare\\] POST ${server.url}/v1/infer -> 502 in \\d+ ms`, "m"));
    assert.match(stderr, /^\[alveare\] retry 1 of 1 for POST \S+\/v1\/infer in \d+ ms after InternalServerError 502: /m);
    assert.ok(!stderr.includes(key), "the key never reaches the log");
  }

  it("npm pack of the TypeScript SDK installs offline and runs plain JavaScript", async () => {
    const packDir = scratchDir("alveare-pack-");
    const packed = succeeded("npm pack", await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", packDir], { cwd: TS_SDK }));
    const [manifest] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = manifest!.files.map((f) => f.path);
    for (const file of ["package.json", "README.md", "CHANGELOG.md", "dist/index.js", "dist/index.d.ts", "dist/client.js"])
      assert.ok(files.includes(file), `${file} is packed`);
    assert.ok(!files.some((f) => f.startsWith("src/")), "sources stay out of the tarball");

    const project = scratchDir("alveare-npm-consumer-");
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    succeeded(
      "npm install",
      await run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(packDir, manifest!.filename)], { cwd: project }),
    );
    // The published types declare every chat parameter the server's schema names (but audio, always refused).
    const declared = readFileSync(join(project, "node_modules/@alveare/sdk/dist/types.d.ts"), "utf8");
    const params = declared.slice(declared.indexOf("interface ChatCompletionCreateParams"));
    for (const field of Object.keys(ChatCompletionRequestSchema.properties).filter((f) => f !== "audio"))
      assert.match(params.slice(0, params.indexOf("\n}")), new RegExp(`^\\s+${field}\\??:`, "m"), `${field} is declared`);
    writeFileSync(join(project, "check.js"), JS_CHECK);
    const port = await closedPort();
    const checked = succeeded("node check.js", await run(process.execPath, ["check.js", String(port)], { cwd: project, env }));
    assertBehaves(JSON.parse(checked.stdout) as Record<string, unknown>, checked.stderr, port);
  });

  it("a wheel of the Python SDK installs offline and runs", async (t) => {
    const python = await pythonThatBuildsWheels();
    if (python === undefined) {
      t.skip("no Python with pip, setuptools and wheel (Debian: python3-pip python3-setuptools python3-wheel)");
      return;
    }
    // Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    const work = scratchDir("alveare-wheel-");
    const source = join(work, "source");
    cpSync(PY_SDK, source, { recursive: true, filter: (path) => !/__pycache__|\.egg-info|[/\\]build$/.test(path) });
    const pipEnv = { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1", PIP_ROOT_USER_ACTION: "ignore" };
    const wheels = join(work, "wheels");
    succeeded(
      "pip wheel",
      await run(python, ["-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "--wheel-dir", wheels, source], {
        cwd: work,
        env: pipEnv,
      }),
    );
    const wheel = readdirSync(wheels).find((f) => /^alveare-0\.2\.0-py3-none-any\.whl$/.test(f));
    assert.ok(wheel !== undefined, `built ${readdirSync(wheels).join(", ")}`);
    const site = join(work, "site");
    succeeded(
      "pip install",
      await run(python, ["-m", "pip", "install", "--no-index", "--no-deps", "--target", site, join(wheels, wheel)], { cwd: work, env: pipEnv }),
    );

    const project = scratchDir("alveare-py-consumer-");
    writeFileSync(join(project, "check.py"), PY_CHECK);
    const port = await closedPort();
    const checked = succeeded(
      "python check.py",
      await run(python, ["check.py", String(port)], {
        cwd: project,
        env: { ...env, PYTHONPATH: site, PYTHONDONTWRITEBYTECODE: "1" },
      }),
    );
    const out = JSON.parse(checked.stdout) as Record<string, unknown>;
    assert.ok(String(out.file).startsWith(site), `imported from the installed wheel, not the repository: ${String(out.file)}`);
    assert.match(String(out.typo), /unexpected keyword argument 'maxtokens'/);
    assertBehaves(out, checked.stderr, port);
  });
});
