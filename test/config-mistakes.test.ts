import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../src/config/config.js";
import { CLI_PATH, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";

const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0" };
  for (const name of ["ALVEARE_MODEL", "ALVEARE_CONFIG", "ALVEARE_DATABASE_URL", "ALVEARE_REDIS_URL", "ALVEARE_HOST", "ALVEARE_PORT"])
    delete env[name];
  return env;
};

/** `alveare serve` on the tiny model with this config file; it must stop by itself, so a served mistake fails on the timeout. */
async function serveWith(file: Record<string, unknown>): Promise<{ status: number | null; stderr: string; path: string }> {
  const dir = tempDir();
  const path = join(dir, "config.json");
  writeFileSync(path, JSON.stringify(file));
  const args = ["serve", "--port", "0", "--data-dir", join(dir, "data"), "--model", await tinyModel(), "--config", path];
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { env: cleanEnv(), encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stderr: r.stderr, path };
}

const remote = { base_url: "http://127.0.0.1:9/v1", model: "m" };

describe("a specialist's JSON schema in the config file", () => {
  for (const [what, specialist, message] of [
    [
      "that is no JSON Schema",
      { output: { type: "json_schema", schema: { type: "nonsense" } } },
      /^alveare: configuration error at specialists\.x\.output\.schema: this is not a JSON Schema: 'type' at schema must be one of .*not "nonsense"/,
    ],
    [
      "that no answer can meet",
      { output: { type: "json_schema", schema: { type: "string", minLength: 5, maxLength: 2 } } },
      /^alveare: configuration error at specialists\.x\.output\.schema: no answer can meet the schema: minLength \(5\) is more than maxLength \(2\)/,
    ],
    [
      "that llama.cpp's grammar cannot hold, on an embedded specialist",
      { output: { type: "json_schema", schema: { type: "object", allOf: [{ type: "object" }] } } },
      /^alveare: configuration error at specialists\.x\.output\.schema: this JSON schema cannot be enforced: 'allOf' at schema/,
    ],
    [
      "that is no JSON Schema, on a remote specialist",
      { output: { type: "json_schema", schema: { type: "object", required: "a" } }, remote },
      /^alveare: configuration error at specialists\.x\.output\.schema: this is not a JSON Schema: 'required' at schema/,
    ],
  ] as const) {
    it(`${what} stops the server at start-up with one line naming the field and the file`, async () => {
      // Served as written, every request to the specialist was refused with a 400 blaming a response_format the caller never sent.
      const r = await serveWith({ specialists: { x: { description: "d", system_prompt: "p", ...specialist } } });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.ok(r.stderr.trimEnd().endsWith(`(in ${r.path})`), r.stderr);
    });
  }

  it("that only a grammar could not hold is served on a remote specialist, whose upstream enforces the schema", async () => {
    const dir = tempDir();
    const path = join(dir, "config.json");
    const schema = { type: "object", allOf: [{ type: "object" }] };
    writeFileSync(
      path,
      JSON.stringify({ specialists: { x: { description: "d", system_prompt: "p", output: { type: "json_schema", schema }, remote } } }),
    );
    const { child } = await spawnServe(["--data-dir", join(dir, "data"), "--model", await tinyModel(), "--config", path], cleanEnv());
    child.kill("SIGKILL");
  });
});

describe("the listening host", () => {
  it("reads an empty ALVEARE_HOST as unset (127.0.0.1), as the other variables, and refuses an empty --host", () => {
    // An empty host reached listen() as "no host": the server bound every interface, then failed on an "Invalid URL".
    assert.equal(loadConfig({}, { ALVEARE_HOST: "" }).host, "127.0.0.1");
    const path = join(tempDir(), "c.json");
    writeFileSync(path, JSON.stringify({ host: "::1" }));
    assert.equal(loadConfig({ config: path }, { ALVEARE_HOST: "" }).host, "::1", "the file's host, under an empty variable");
    assert.throws(() => loadConfig({ host: "" }, { ALVEARE_HOST: "10.0.0.2" }), /configuration error at --host: must not be empty/);
  });
});

describe("ALVEARE_THREADS", () => {
  it("takes auto or a count, and its refusal names both", () => {
    assert.equal(loadConfig({}, { ALVEARE_THREADS: "auto" }).engine.threads, "auto");
    assert.equal(loadConfig({}, { ALVEARE_THREADS: "3" }).engine.threads, 3);
    for (const wrong of ["abc", "0", "1.5", "2000"]) {
      assert.throws(
        () => loadConfig({}, { ALVEARE_THREADS: wrong }),
        { message: `configuration error at ALVEARE_THREADS: must be "auto" or an integer between 1 and 1024, got '${wrong}'` },
        wrong,
      );
    }
  });
});

describe("an empty flag", () => {
  it("is refused naming it, rather than read as unset (the default model downloaded, no config file, the current directory)", () => {
    for (const [key, flag] of [
      ["port", "--port"],
      ["host", "--host"],
      ["dataDir", "--data-dir"],
      ["model", "--model"],
      ["config", "--config"],
    ] as const) {
      assert.throws(() => loadConfig({ [key]: "" }, {}), new RegExp(`^.*configuration error at ${flag}: must not be empty: give `), flag);
    }
  });

  it("stops `alveare serve` and the admin commands before they touch anything", () => {
    // `--model "$MODEL"` with MODEL unset: before, the server went on to download the default model.
    const serve = spawnSync(process.execPath, [CLI_PATH, "serve", "--port", "0", "--model", ""], {
      env: cleanEnv(),
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(serve.status, 2, serve.stderr);
    assert.match(serve.stderr, /^alveare: configuration error at --model: must not be empty: give a \.gguf file/);
    // `--data-dir ""` resolved to the current directory, where the command would have made a database.
    const cwd = tempDir();
    const keys = spawnSync(process.execPath, [CLI_PATH, "accounts", "list", "--data-dir", ""], { cwd, env: cleanEnv(), encoding: "utf8" });
    assert.equal(keys.status, 2, keys.stderr);
    assert.match(keys.stderr, /configuration error at --data-dir: must not be empty/);
    assert.deepEqual(readdirSync(cwd), []);
  });
});

/** Loads a config file of this text: its error's message, or `fine` when it loads. */
const loadText = (text: string, fine: string): string => {
  const path = join(tempDir(), "c.json");
  writeFileSync(path, text);
  try {
    loadConfig({ config: path }, {});
  } catch (error) {
    return (error as Error).message;
  }
  return fine;
};

describe("a specialist's output in the config file", () => {
  const refusal = (output: object): string =>
    loadText(JSON.stringify({ specialists: { x: { description: "d", system_prompt: "p", output } } }), "served");

  it("refuses a field its type does not read, rather than serving the specialist otherwise than the file says", () => {
    // Ignored before: labels on a text specialist served free text, a schema on a labels one was never used.
    assert.match(refusal({ type: "text", labels: ["a", "b"] }), /at specialists\.x\.output\.labels: is not read by output type text/);
    assert.match(
      refusal({ type: "json_object", schema: { type: "object" } }),
      /at specialists\.x\.output\.schema: is not read by output type json_object/,
    );
    assert.match(
      refusal({ type: "labels", labels: ["a"], schema: { type: "object" } }),
      /at specialists\.x\.output\.schema: is not read by output type labels/,
    );
    assert.match(refusal({ type: "json_schema", schema: { type: "object" }, labels: ["a"] }), /at specialists\.x\.output\.labels: is not read/);
    assert.equal(refusal({ type: "labels", labels: ["a", "b"] }), "served");
  });

  it("says that a missing type is missing", () => {
    assert.match(refusal({ labels: ["a", "b"] }), /at specialists\.x\.output\.type: is required \(one of text, labels, json_object, json_schema\)/);
  });
});

describe("a specialist turned off in the config file", () => {
  it("must be one that exists: a misspelt id turned nothing off and left the one meant served", () => {
    assert.equal(
      loadText(JSON.stringify({ specialists: { clasify: { enabled: false } } }), "loaded"),
      "configuration error at specialists.clasify: turns off no specialist: there is none named 'clasify' (did you mean 'classify'?)",
    );
    assert.equal(
      loadText(JSON.stringify({ specialists: { translate: { enabled: false } } }), "loaded"),
      "configuration error at specialists.translate: turns off no specialist: there is none named 'translate'",
    );
    assert.equal(loadText(JSON.stringify({ specialists: { classify: { enabled: false } } }), "loaded"), "loaded");
    // A new one written out and kept off for later is no mistake.
    assert.equal(
      loadText(JSON.stringify({ specialists: { tickets: { description: "d", system_prompt: "p", enabled: false } } }), "loaded"),
      "loaded",
    );
  });
});

describe("a key written twice in the config file", () => {
  const load = (text: string): string => loadText(text, "loaded");

  it("is refused naming it, rather than JSON.parse keeping the last silently", () => {
    // A specialist block copied and left behind served only the second, with no word said.
    const specialist = '{"description": "d", "system_prompt": "p"}';
    assert.match(load(`{"specialists": {"x": ${specialist}, "x": ${specialist}}}`), /configuration error at specialists\.x: is written twice/);
    assert.match(
      load('{"plans": {"solo": {"requests_per_minute": 5, "requests_per_minute": 6}}}'),
      /at plans\.solo\.requests_per_minute: is written twice/,
    );
    const upstream = '{"base_url": "http://127.0.0.1:9/v1", "model": "m"}';
    assert.match(
      load(
        `{"specialists": {"x": {"description": "d", "system_prompt": "", "remote": {"upstreams": [${upstream}, {"base_url": "http://127.0.0.1:9/v1", "model": "m", "model": "n"}]}}}}`,
      ),
      /at specialists\.x\.remote\.upstreams\[1\]\.model: is written twice/,
    );
  });

  it("is told apart from the same key in other objects and from keys inside strings", () => {
    const prompt = JSON.stringify('say "x": {"x": 1, "x": 2} \\ [ , ]');
    assert.equal(
      load(`{"specialists": {"x": {"description": "d", "system_prompt": ${prompt}}, "y": {"description": "d", "system_prompt": ${prompt}}}}`),
      "loaded",
    );
    assert.equal(load('{"plans": {"a": {"requests_per_minute": 1, "requests_per_month": 1, "specialists": ["chat", "chat"]}}}'), "loaded");
  });
});
