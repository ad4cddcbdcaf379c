import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { once } from "node:events";
import { join, resolve as resolvePath } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../src/config/config.js";
import { AccountService } from "../src/accounts/accounts.js";
import { People } from "../src/accounts/people.js";
import { createStore } from "../src/store/create-store.js";
import { cliJson, cliKey, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";
import { freePort } from "./helpers/held-upstream.js";
import { closedPort } from "./helpers/ports.js";

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0" };
  delete env.ALVEARE_MODEL;
  delete env.ALVEARE_CONFIG;
  delete env.ALVEARE_DATABASE_URL;
  delete env.ALVEARE_REDIS_URL;
  return { ...env, ...extra };
};

describe("alveare serve", () => {
  it("without a model and without network, stops with one line on how to set ALVEARE_MODEL", () => {
    const dataDir = tempDir();
    // An unreachable download host stands for "offline" on any machine.
    const r = spawnSync(process.execPath, [CLI, "serve", "--port", "0", "--data-dir", dataDir], {
      env: cleanEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 2);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /ALVEARE_MODEL=\/path\/to\/model\.gguf/);
    assert.match(lines[0]!, /Qwen2\.5-0\.5B/);
    assert.equal(existsSync(join(dataDir, "models", "qwen2.5-0.5b-instruct-q4_k_m.gguf")), false);
  });

  it(
    "stops with one line, not a hang, when the data dir cannot be made under a directory that refuses it",
    { skip: !existsSync("/proc/self") },
    () => {
      // /proc answers ENOENT to every mkdir: Node's recursive mkdir retried it for ever.
      // (accounts create: the one account command that starts a database where there is none.)
      for (const args of [
        ["accounts", "create", "--name", "x", "--plan", "solo"],
        ["serve", "--port", "0"],
      ]) {
        const r = spawnSync(process.execPath, [CLI, ...args, "--data-dir", "/proc/alveare-test/data"], {
          env: cleanEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }),
          encoding: "utf8",
          timeout: 30_000,
        });
        assert.notEqual(r.status, null, `${args[0]} ended by itself`);
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /cannot make the directory \/proc\/alveare-test\/data: \/proc\/alveare-test could not be made \(ENOENT\)/);
        assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
      }
      // /proc itself exists and refuses the file.
      const r = spawnSync(process.execPath, [CLI, "accounts", "create", "--name", "x", "--plan", "solo", "--data-dir", "/proc"], {
        env: cleanEnv(),
        encoding: "utf8",
        timeout: 30_000,
      });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^alveare: cannot open the database file \/proc\/alveare\.db \(ENOENT\)$/m);
    },
  );

  it("stops at once with one line naming the link when the data dir, or a directory above it, is a dangling symbolic link", () => {
    const dir = tempDir();
    const dangling = join(dir, "data");
    symlinkSync(join(dir, "nowhere"), dangling);
    for (const [dataDir, message] of [
      [dangling, `cannot make the directory ${dangling}: ${dangling} is a symbolic link to ${join(dir, "nowhere")}, which does not exist (ENOENT)`],
      [
        join(dangling, "below"),
        `cannot make the directory ${join(dangling, "below")}: ${dangling} is a symbolic link to ${join(dir, "nowhere")}, which does not exist (ENOENT)`,
      ],
    ]) {
      for (const args of [
        ["accounts", "create", "--name", "x", "--plan", "solo"],
        ["serve", "--port", "0"],
      ]) {
        const r = spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir!], {
          env: cleanEnv({ HF_ENDPOINT: "http://127.0.0.1:9" }),
          encoding: "utf8",
          timeout: 30_000,
        });
        assert.equal(r.status, 1, `${args[0]} ${dataDir}: ${r.stderr}`);
        assert.equal(
          r.stderr
            .split("\n")
            .filter((line) => line.startsWith("alveare:"))
            .join("\n"),
          `alveare: ${message}`,
        );
        assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
      }
    }
    assert.equal(existsSync(join(dir, "nowhere")), false, "nothing was made through the link");
  });

  it("stops with a message naming the field when the config file is wrong", () => {
    const dir = tempDir();
    const config = join(dir, "bad.json");
    writeFileSync(config, JSON.stringify({ specialists: { classify: { output: { type: "labels", labels: [] } } } }));
    const r = spawnSync(process.execPath, [CLI, "serve", "--config", config], { env: cleanEnv(), encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /specialists\.classify\.output\.labels/);
  });

  it("stops with one line (exit 2) when ALVEARE_ADMIN_TOKEN is an API key, never echoing the key", () => {
    const secret = "Zq9".repeat(14);
    const r = spawnSync(process.execPath, [CLI, "serve", "--port", "0", "--data-dir", tempDir()], {
      env: cleanEnv({ ALVEARE_ADMIN_TOKEN: `alv_live_${secret}`, HF_ENDPOINT: "http://127.0.0.1:9" }),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /configuration error at ALVEARE_ADMIN_TOKEN: must not start with alv_live_ like an account's API key/);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), r.stderr);
  });

  it("stops with a message naming ALVEARE_METRICS_PORT when it is the API's port, not a port 'already in use' by another process", async () => {
    const port = String(await freePort());
    const r = spawnSync(process.execPath, [CLI, "serve", "--model", await tinyModel(), "--data-dir", tempDir()], {
      env: cleanEnv({ ALVEARE_PORT: port, ALVEARE_METRICS_PORT: port }),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`configuration error at ALVEARE_METRICS_PORT: ${port} is the API's port too`));
    assert.doesNotMatch(r.stderr, /already in use/);
    // Different literal addresses may share a port number; a wildcard overlaps every address.
    assert.equal(loadConfig({}, { ALVEARE_HOST: "127.0.0.2", ALVEARE_PORT: port, ALVEARE_METRICS_PORT: port }).port, Number(port));
    assert.throws(() => loadConfig({}, { ALVEARE_HOST: "0.0.0.0", ALVEARE_PORT: port, ALVEARE_METRICS_PORT: port }), /ALVEARE_METRICS_PORT/);
    assert.throws(() => loadConfig({ port: "9464" }, {}), /ALVEARE_METRICS_PORT: 9464 is the API's port too/, "the metrics port's default counts");
    assert.equal(loadConfig({ port: "9464" }, { ALVEARE_METRICS_PORT: "0" }).port, 9464);
  });

  it("finishes in-flight requests on SIGTERM and exits cleanly", async () => {
    const model = await tinyModel();
    const dataDir = tempDir();
    const { key } = cliKey(dataDir, "professional", cleanEnv());
    const { child, url, output } = await spawnServe(["--model", model, "--data-dir", dataDir], cleanEnv());
    // A stream's headers go out with its first token: once they are here, the generation is in flight.
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 200, stream: true }),
    });
    assert.equal(response.status, 200);
    child.kill("SIGTERM");
    const body = await response.text();
    assert.match(body, /data: \[DONE\]\n\n$/, "the stream finished normally");
    assert.doesNotMatch(body, /"error"/);
    const code = await new Promise((resolve) => child.on("exit", resolve));
    assert.equal(code, 0);
    assert.match(output(), /shutting down/);
  });

  it("drains when one Ctrl-C arrives twice at once, as under `npm start` in a terminal", async () => {
    // The terminal signals npm and the server (one process group), and npm hands its SIGINT on to the
    // server too. Before, that second copy counted as a second Ctrl-C: exit 130 at once, the stream cut.
    const dataDir = tempDir();
    const { key } = cliKey(dataDir, "professional", cleanEnv());
    const { child, url, output } = await spawnServe(["--model", await tinyModel(), "--data-dir", dataDir], cleanEnv());
    try {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: "alveare-chat", messages: [{ role: "user", content: "hi" }], max_tokens: 200, stream: true }),
      });
      assert.equal(response.status, 200);
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGINT");
      // npm's copy arrives once the server has its own (two sent at once would merge into one pending signal).
      while (!output().includes("shutting down")) await new Promise((r) => setTimeout(r, 5));
      child.kill("SIGINT");
      const body = await response.text();
      assert.match(body, /data: \[DONE\]\n\n$/, "the stream finished normally");
      assert.equal(await exited, 0);
      assert.match(output(), /"msg":"stopped"/);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("exits 130 at a second signal, at once, and leaves no prefix snapshots behind", async () => {
    const { child, url, output } = await spawnServe(["--model", await tinyModel(), "--data-dir", tempDir()], cleanEnv({ ALVEARE_LOG_LEVEL: "info" }));
    try {
      let directory: string | undefined;
      for (let i = 0; i < 400 && directory === undefined; i++) {
        directory = /"directory":"([^"]+)"/.exec(output())?.[1];
        if (directory === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(directory !== undefined && existsSync(directory), "the start-up snapshots are on disk");
      // An upload never finished keeps the first signal's drain waiting (for its 10 s) until the second signal.
      const upload = connect(Number(new URL(url).port), "127.0.0.1");
      upload.on("error", () => undefined);
      await once(upload, "connect");
      upload.write("POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGINT");
      while (!output().includes("shutting down")) await new Promise((r) => setTimeout(r, 10));
      // Later than half a second: a signal sooner is the first one relayed (see the test above).
      await new Promise((r) => setTimeout(r, 600));
      child.kill("SIGINT");
      assert.equal(await exited, 130);
      upload.destroy();
      assert.equal(existsSync(directory), false);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("alveare models pull", () => {
  it("downloads with progress, verifies the file is a GGUF and prints its path", async () => {
    const model = readFileSync(await tinyModel());
    const server = createServer((req, res) => {
      if (req.url === "/models/tiny.gguf") res.writeHead(200, { "content-length": model.length }).end(model);
      else res.writeHead(200, { "content-type": "text/html" }).end("<html>not a model</html>");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const dataDir = tempDir();
      const run = (uri: string) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [CLI, "models", "pull", uri, "--data-dir", dataDir], { env: cleanEnv() });
          let stdout = "";
          let stderr = "";
          child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
          child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
          child.on("exit", (code) => resolve({ code, stdout, stderr }));
        });
      const ok = await run(`${base}/models/tiny.gguf`);
      assert.equal(ok.code, 0, ok.stderr);
      const path = ok.stdout.trim();
      assert.equal(path, join(dataDir, "models", "tiny.gguf"));
      assert.deepEqual(readFileSync(path), model);
      assert.match(ok.stderr, /100%/);
      const bad = await run(`${base}/models/page.gguf`);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /not a GGUF/);
      assert.equal(existsSync(join(dataDir, "models", "page.gguf")), false);
      // A local file is checked the same way: a text file is no model either.
      const text = join(dataDir, "notes.txt");
      writeFileSync(text, "not a model\n");
      const local = await run(text);
      assert.equal(local.code, 2, local.stdout);
      assert.equal(local.stderr, `alveare: ${text} is not a GGUF file\n`);
      assert.equal(local.stdout, "");
      // A path that is not there: `models pull` has no ALVEARE_MODEL to set, so the message names what it takes.
      const absent = await run(join(dataDir, "qwen.gguf"));
      assert.equal(absent.code, 2);
      assert.equal(
        absent.stderr,
        `alveare: model file not found: ${join(dataDir, "qwen.gguf")}; give an existing .gguf file, an hf:owner/repo/file.gguf URI or an http(s) URL\n`,
      );
      // A relative path that reads as a Hugging Face repository is most likely one: the URI is hinted.
      const repository = await run("Qwen/Qwen2.5-0.5B-Instruct-GGUF");
      assert.equal(repository.code, 2);
      assert.match(repository.stderr, / \(did you mean hf:Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF\/<file>\.gguf, a file in that repository\?\)\n$/);
      // A missing .gguf path may as well be a local file: no guess.
      assert.doesNotMatch((await run("models/qwen.gguf")).stderr, /did you mean/);
      // Nothing listens there: the advice fits `models pull` (which has no --model of its own) as well as `serve`.
      const unreachable = await run(`http://127.0.0.1:${await closedPort()}/models/elsewhere.gguf`);
      assert.equal(unreachable.code, 2);
      assert.match(
        unreachable.stderr,
        /^alveare: cannot download the model http:\/\/127\.0\.0\.1:\d+\/models\/elsewhere\.gguf \(ECONNREFUSED\): check the address/,
      );
      assert.match(unreachable.stderr, /start the server with --model \/path\/to\/model\.gguf \(or ALVEARE_MODEL=\/path\/to\/model\.gguf\)\n$/);
    } finally {
      server.close();
    }
  });
});

describe("configuration", () => {
  it("takes flags over env over the config file over defaults", () => {
    const dir = tempDir();
    const file = join(dir, "c.json");
    writeFileSync(file, JSON.stringify({ port: 7000, host: "0.0.0.0", log_level: "debug", engine: { threads: 3 } }));
    const fromFile = loadConfig({ config: file }, {});
    assert.equal(fromFile.port, 7000);
    assert.equal(fromFile.engine.threads, 3);
    const fromEnv = loadConfig({ config: file }, { ALVEARE_PORT: "7100", ALVEARE_THREADS: "1", ALVEARE_HOST: "::1" });
    assert.equal(fromEnv.port, 7100);
    assert.equal(fromEnv.host, "::1");
    assert.equal(fromEnv.engine.threads, 1);
    const fromFlags = loadConfig({ config: file, port: "7200" }, { ALVEARE_PORT: "7100" });
    assert.equal(fromFlags.port, 7200);
    const defaults = loadConfig({}, {});
    assert.equal(defaults.port, 8080);
    assert.equal(defaults.host, "127.0.0.1");
    assert.equal(defaults.engine.threads, "auto");
    assert.match(defaults.models.base!, /^hf:Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF/);
    assert.deepEqual(
      defaults.specialists.map((s) => s.id),
      ["classify", "summarise", "extract", "qa", "chat", "code", "embed"],
    );
  });

  it("changes a default specialist field by field, adds new ones and removes disabled ones", () => {
    const dir = tempDir();
    const file = join(dir, "c.json");
    writeFileSync(
      file,
      JSON.stringify({
        specialists: {
          classify: { output: { type: "labels", labels: ["spam", "ham"] }, defaults: { temperature: 0 } },
          code: { enabled: false },
          translate: { description: "English to French", system_prompt: "Translate to French.", context_size: 1024 },
        },
      }),
    );
    const config = loadConfig({ config: file }, {});
    const classify = config.specialists.find((s) => s.id === "classify")!;
    assert.deepEqual(classify.output, { type: "labels", labels: ["spam", "ham"] });
    assert.match(classify.systemPrompt, /spam, ham/);
    assert.equal(classify.defaults.temperature, 0);
    assert.equal(classify.defaults.maxTokens, 512);
    assert.equal(
      config.specialists.some((s) => s.id === "code"),
      false,
    );
    const translate = config.specialists.find((s) => s.id === "translate")!;
    assert.equal(translate.contextSize, 1024);
    assert.equal(translate.engine.kind === "embedded" && translate.engine.model, "base");
  });

  for (const [name, file, field] of [
    ["an unknown top-level field", { prot: 1 }, /prot/],
    ["a bad threads value", { engine: { threads: "many" } }, /engine\.threads/],
    ["a new specialist without a description", { specialists: { x: { system_prompt: "y" } } }, /specialists\.x\.description/],
    [
      "a remote without base_url",
      { specialists: { x: { description: "d", system_prompt: "", remote: { model: "m" } } } },
      /specialists\.x\.remote\.base_url/,
    ],
    [
      "a remote base_url holding credentials",
      { specialists: { x: { description: "d", system_prompt: "", remote: { base_url: "https://me:s3cret@llm.example/v1", model: "m" } } } },
      /specialists\.x\.remote\.base_url: must not hold credentials .*api_key_env/,
    ],
    [
      "a remote base_url with a query string (a key in it would reach logs, metrics and /ready, and the path is appended)",
      { specialists: { x: { description: "d", system_prompt: "", remote: { base_url: "https://llm.example/v1?key=s3cret", model: "m" } } } },
      /specialists\.x\.remote\.base_url: must have no query string or fragment/,
    ],
    [
      "a remote base_url with a fragment",
      { specialists: { x: { description: "d", system_prompt: "", remote: { base_url: "https://llm.example/v1#main", model: "m" } } } },
      /specialists\.x\.remote\.base_url: must have no query string or fragment/,
    ],
    [
      "a remote base_url of another scheme",
      { specialists: { x: { description: "d", system_prompt: "", remote: { base_url: "ftp://llm.example/v1", model: "m" } } } },
      /specialists\.x\.remote\.base_url: must be an http\(s\) URL/,
    ],
    ["an unknown output type", { specialists: { chat: { output: { type: "xml" } } } }, /specialists\.chat\.output\.type/],
    ["a model name that is not defined", { specialists: { chat: { model: "big" } } }, /specialists\.chat\.model/],
    [
      "a PostgreSQL URL without a Redis URL",
      { database_url: "postgres://db/alveare" },
      /at ALVEARE_REDIS_URL: is missing \(nor redis_url in the config file\): database_url \(config file\) is set/,
    ],
    [
      "a Redis URL without a PostgreSQL URL",
      { redis_url: "redis://cache" },
      /at ALVEARE_DATABASE_URL: is missing \(nor database_url in the config file\): redis_url \(config file\) is set/,
    ],
    [
      "a database URL of another scheme",
      { database_url: "mysql://db/alveare", redis_url: "redis://cache" },
      /database_url \(config file\): must be a postgres/,
    ],
    ["a data dir that is a file", { data_dir: "/etc/hostname" }, /data_dir \(config file\): \/etc\/hostname is a file, not a directory/],
    [
      "a data dir that cannot be made under a file",
      { data_dir: "/etc/hostname/data" },
      /data_dir \(config file\): \/etc\/hostname\/data cannot be made: \/etc\/hostname is a file, not a directory/,
    ],
    [
      "a log level pino does not have",
      { log_level: "loud" },
      /log_level \(config file\): must be one of fatal, error, warn, info, debug, trace, silent, got 'loud'/,
    ],
    [
      "a Redis URL whose database is not a number",
      { database_url: "postgres://db/alveare", redis_url: "redis://cache:6379/abc" },
      /redis_url \(config file\): names its database by number only/,
    ],
    [
      "a label with whitespace around it (answers are trimmed, scores keyed by the label)",
      { specialists: { classify: { output: { type: "labels", labels: ["yes ", "no"] } } } },
      /specialists\.classify\.output\.labels: "yes " starts or ends with whitespace/,
    ],
    [
      "a label listed twice",
      { specialists: { classify: { output: { type: "labels", labels: ["yes", "no", "yes"] } } } },
      /specialists\.classify\.output\.labels: "yes" is listed twice/,
    ],
    [
      "a Redis URL of another scheme",
      { database_url: "postgres://db/alveare", redis_url: "http://cache" },
      /redis_url \(config file\): must be a redis/,
    ],
  ] as const) {
    it(`names the field for ${name}`, () => {
      const path = join(tempDir(), "c.json");
      writeFileSync(path, JSON.stringify(file));
      assert.throws(() => loadConfig({ config: path }, {}), field);
    });
  }
});

describe("plans in the config file", () => {
  it("change one field of a default plan while one of its specialists is disabled; a list the file writes is still checked", () => {
    const path = join(tempDir(), "c.json");
    writeFileSync(path, JSON.stringify({ specialists: { summarise: { enabled: false } }, plans: { solo: { window_seconds: 3 } } }));
    assert.equal(loadConfig({ config: path }, {}).plans.solo?.windowMs, 3000);
    writeFileSync(
      path,
      JSON.stringify({ specialists: { summarise: { enabled: false } }, plans: { solo: { specialists: ["classify", "summarise"] } } }),
    );
    assert.throws(() => loadConfig({ config: path }, {}), /plans\.solo\.specialists: 'summarise' is not a specialist of this server/);
  });
});

describe("the shared-mode URLs", () => {
  it("read an empty ALVEARE_DATA_DIR as unset: ./data, not the current directory", () => {
    assert.equal(loadConfig({}, { ALVEARE_DATA_DIR: "" }).dataDir, resolvePath("./data"));
  });

  it("are taken together, from the environment or the file, and reach the config", () => {
    const env = { ALVEARE_DATABASE_URL: "postgresql://u:p@db:5433/alveare", ALVEARE_REDIS_URL: "rediss://cache:6380" };
    const config = loadConfig({}, env);
    assert.equal(config.databaseUrl, env.ALVEARE_DATABASE_URL);
    assert.equal(config.redisUrl, env.ALVEARE_REDIS_URL);
    assert.equal(loadConfig({}, {}).databaseUrl, undefined, "neither: the embedded mode");
    assert.equal(loadConfig({}, {}).nodeLeaseMs, 15_000);
    assert.equal(loadConfig({}, { ...env, ALVEARE_NODE_LEASE_SECONDS: "2" }).nodeLeaseMs, 2_000);
    assert.throws(() => loadConfig({}, { ...env, ALVEARE_NODE_LEASE_SECONDS: "0" }), /ALVEARE_NODE_LEASE_SECONDS/);
    assert.throws(() => loadConfig({}, { ALVEARE_DATABASE_URL: "postgres:///nohost", ALVEARE_REDIS_URL: "redis://c" }), /ALVEARE_DATABASE_URL/);
    const socket = "postgres:///alveare?host=/var/run/postgresql";
    assert.equal(loadConfig({}, { ALVEARE_DATABASE_URL: socket, ALVEARE_REDIS_URL: "redis://c" }).databaseUrl, socket, "a Unix socket");
  });

  it("say why a URL of the right scheme is refused: its port, a URL that cannot be parsed, no host; never quoting it", () => {
    const refusal = (database: string, redis: string): string => {
      try {
        loadConfig({}, { ALVEARE_DATABASE_URL: database, ALVEARE_REDIS_URL: redis });
      } catch (error) {
        return (error as Error).message;
      }
      assert.fail(`${database} and ${redis} were taken`);
    };
    const port = /cannot be parsed as a URL .*: its port is not a number from 1 to 65535$/;
    assert.match(refusal("postgres://db/x", "redis://127.0.0.1:notaport"), /at ALVEARE_REDIS_URL: /);
    assert.match(refusal("postgres://db/x", "redis://127.0.0.1:notaport"), port);
    assert.match(refusal("postgres://u:s3cret@db:99999/x", "redis://c"), /at ALVEARE_DATABASE_URL: /);
    assert.match(refusal("postgres://u:s3cret@db:99999/x", "redis://c"), port);
    const slash = refusal("postgres://u:s3/cret@db:5432/x", "redis://c");
    assert.match(slash, /ALVEARE_DATABASE_URL: cannot be parsed as a URL .*percent-encode/);
    assert.match(refusal("postgres:///x", "redis://c"), /ALVEARE_DATABASE_URL: names no host/);
    for (const message of [refusal("postgres://u:s3cret@db:99999/x", "redis://c"), slash]) {
      assert.doesNotMatch(message, /s3|cret|got postgres/, message);
    }
  });

  it("never show a password when the scheme is wrong", () => {
    assert.throws(
      () => loadConfig({}, { ALVEARE_DATABASE_URL: "mysql://admin:s3cret@db/x", ALVEARE_REDIS_URL: "redis://c" }),
      (error: Error) => /ALVEARE_DATABASE_URL/.test(error.message) && !error.message.includes("s3cret"),
    );
  });

  for (const [name, url, reason] of [
    ["an unreachable host", "postgres://postgres@127.0.0.1:9/alveare", /connection refused/],
    ["credentials the server refuses", "postgres://no_such_role_alveare:wrong@127.0.0.1:5432/test", /authentication failed|does not exist/],
  ] as const) {
    it(`stop serve and the CLI with one line naming ALVEARE_DATABASE_URL for ${name}`, async () => {
      const model = await tinyModel();
      const env = cleanEnv({ ALVEARE_DATABASE_URL: url, ALVEARE_REDIS_URL: "redis://127.0.0.1:6379" });
      for (const args of [
        ["serve", "--port", "0", "--model", model, "--data-dir", tempDir()],
        ["accounts", "list", "--data-dir", tempDir()],
      ]) {
        const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", timeout: 30_000 });
        assert.equal(r.status, 1, `${args[0]}: ${r.stderr}`);
        const lines = r.stderr
          .trim()
          .split("\n")
          .filter((l) => !l.startsWith("using "));
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, /ALVEARE_DATABASE_URL/);
        assert.match(lines[0]!, reason);
        assert.doesNotMatch(r.stderr, /wrong|\n\s+at /, "no password, no stack trace");
      }
    });
  }
});

describe("the example config in examples/", () => {
  it("is valid", () => {
    const path = new URL("../../examples/alveare.config.json", import.meta.url).pathname;
    const config = loadConfig({ config: path }, {});
    const upstreamsOf = (id: string) => {
      const engine = config.specialists.find((s) => s.id === id)!.engine;
      assert.equal(engine.kind, "remote", id);
      return engine.kind === "remote" ? engine.upstreams : [];
    };
    assert.equal(upstreamsOf("big")[0]!.model, "Qwen/Qwen2.5-7B-Instruct");
    assert.equal(upstreamsOf("pooled").length, 2);
    assert.deepEqual(config.specialists.find((s) => s.id === "classify")!.output, { type: "labels", labels: ["bug", "feature request", "question"] });
    assert.equal(config.plans.starter!.tokensPerWindow, 200_000, "a default plan changed field by field");
    assert.equal(config.plans.team!.maxConcurrentRequests, 16, "a new plan");
  });

  it("starts as shipped, given a local model (its LoRA specialist waits for its adapter, disabled)", async () => {
    const path = new URL("../../examples/alveare.config.json", import.meta.url).pathname;
    // Before, it stopped after loading the model: its LoRA adapter is a placeholder the reader has no file for.
    const { child, url } = await spawnServe(["--config", path, "--model", await tinyModel(), "--data-dir", tempDir()], cleanEnv());
    try {
      assert.equal((await fetch(`${url}/health`)).status, 200);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("account administration from the CLI", () => {
  it("lists accounts, changes plan and status, and invites members, on the server's database", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const run = (args: string[]) => cliJson([...args, "--data-dir", dataDir], env) as Record<string, unknown> & Array<Record<string, unknown>>;
    const { accountId } = cliKey(dataDir, "solo", env);
    assert.deepEqual(
      run(["accounts", "list"]).map((a) => [a.id, a.plan, a.status]),
      [[accountId, "solo", "active"]],
    );
    assert.equal(run(["accounts", "update", accountId, "--plan", "scale"]).plan, "scale");
    assert.equal(run(["accounts", "update", accountId, "--status", "suspended"]).status, "suspended");
    const invite = run(["members", "invite", "--account", accountId, "--email", "Dev@Example.com"]);
    assert.equal(invite.email, "dev@example.com");
    assert.match(invite.invite_path as unknown as string, /^\/dashboard\/#invite=\w{40}$/);
    // The whole link and its expiry, as the plain output gives them.
    assert.equal(invite.url as unknown as string, `http://127.0.0.1:8080${invite.invite_path as unknown as string}`);
    const expires = Date.parse(invite.expires_at as unknown as string) - Date.now();
    assert.ok(expires > 6.9 * 86_400_000 && expires <= 7 * 86_400_000, String(invite.expires_at));
    const plain = spawnSync(
      process.execPath,
      [CLI, "members", "invite", "--account", accountId, "--email", "ops@example.com", "--data-dir", dataDir],
      {
        env,
        encoding: "utf8",
      },
    );
    assert.match(plain.stdout, /valid until \d{4}-\d\d-\d\dT[\d:.]+Z\):\nhttp:\/\/127\.0\.0\.1:8080\/dashboard\/#invite=\w{40}\n$/);
    assert.match(plain.stderr, /the link starts with http:\/\/127\.0\.0\.1:8080 .* set ALVEARE_PUBLIC_URL/);
    const published = spawnSync(
      process.execPath,
      [CLI, "members", "invite", "--account", accountId, "--email", "ops@example.com", "--json", "--data-dir", dataDir],
      { env: { ...env, ALVEARE_PUBLIC_URL: "https://alveare.example.com" }, encoding: "utf8" },
    );
    assert.match(JSON.parse(published.stdout).url as string, /^https:\/\/alveare\.example\.com\/dashboard\/#invite=\w{40}$/);
    assert.doesNotMatch(published.stderr, /the link starts with/);
    // With --json, stderr stays empty even when the link's address comes from the host and port settings.
    const quiet = spawnSync(
      process.execPath,
      [CLI, "members", "invite", "--account", accountId, "--email", "ops@example.com", "--json", "--data-dir", dataDir],
      { env, encoding: "utf8" },
    );
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
    assert.match(JSON.parse(quiet.stdout).url as string, /^http:\/\/127\.0\.0\.1:8080\/dashboard\/#invite=\w{40}$/);
    const bad = spawnSync(process.execPath, [CLI, "accounts", "update", accountId, "--status", "frozen", "--data-dir", dataDir], {
      env,
      encoding: "utf8",
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /active or suspended/);
    // A right command that cannot be done: exit 1, like an unknown account, not 2.
    const suspended = spawnSync(process.execPath, [CLI, "keys", "create", "--account", accountId, "--data-dir", dataDir], { env, encoding: "utf8" });
    assert.equal(suspended.status, 1, suspended.stderr);
    assert.match(suspended.stderr, /suspended/);
  });

  it("lists and removes members, by id or e-mail, ending their sessions at once", async () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const run = (args: string[]) => cliJson([...args, "--data-dir", dataDir], env) as Record<string, unknown> & Array<Record<string, unknown>>;
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir], { env, encoding: "utf8" });
    const { accountId } = cliKey(dataDir, "solo", env);
    const other = cliKey(dataDir, "solo", env).accountId;
    const dev = run(["members", "invite", "--account", accountId, "--email", "dev@example.com"]);
    const ops = run(["members", "invite", "--account", accountId, "--email", "ops@example.com"]);
    const elsewhere = run(["members", "invite", "--account", other, "--email", "else@example.com"]);
    // Dev accepts and is signed in: removal from the CLI must end that session.
    const stores = await createStore({ dataDir });
    const people = new People(stores, undefined);
    const session = await people.acceptInvitation(
      /#invite=(\w+)$/.exec(dev.invite_path as unknown as string)![1]!,
      "a long enough password",
      "10.0.0.1",
    );
    try {
      assert.deepEqual(
        run(["members", "list", "--account", accountId]).map((m) => [m.email, m.status]),
        [
          ["dev@example.com", "active"],
          ["ops@example.com", "invited"],
        ],
      );
      assert.match(cli(["members", "list", "--account", accountId]).stdout, /dev@example\.com +active/);

      const wrongAccount = cli(["members", "remove", "--account", accountId, "--member", elsewhere.member_id as unknown as string]);
      assert.equal(wrongAccount.status, 1, "another account's member is not found");
      assert.match(wrongAccount.stderr, /no member/);
      // By e-mail: named as typed, not by the id of the other account's member it matched.
      const wrongByEmail = cli(["members", "remove", "--account", accountId, "--email", "else@example.com"]);
      assert.equal(wrongByEmail.status, 1);
      assert.ok(wrongByEmail.stderr.includes(`alveare: no member 'else@example.com' in account '${accountId}' (database `), wrongByEmail.stderr);
      const noAccount = cli(["members", "remove", "--account", "acct_nope", "--email", "else@example.com"]);
      assert.equal(noAccount.status, 1);
      assert.match(noAccount.stderr.trim().split("\n").at(-1)!, /^alveare: no account 'acct_nope' \(database /);
      assert.equal(cli(["members", "remove", "--account", accountId]).status, 2, "--member or --email is needed");

      assert.equal(run(["members", "remove", "--account", accountId, "--email", "Dev@Example.com"]).removed, true);
      assert.equal(await people.session(session.token), undefined, "the removed member's session has ended");
      await assert.rejects(people.signIn("dev@example.com", "a long enough password", "10.0.0.1"), /Wrong email or password/);
      assert.match(
        cli(["members", "remove", "--account", accountId, "--member", ops.member_id as unknown as string]).stdout,
        /removed member mem_\w+ \(ops@example\.com\)/,
      );
      assert.deepEqual(run(["members", "list", "--account", accountId]), []);
      assert.equal(run(["members", "list", "--account", other]).length, 1, "another account's members stay");
      assert.equal(run(["members", "invite", "--account", other, "--email", "dev@example.com"]).email, "dev@example.com", "the e-mail is free again");
      const audit = run(["audit", "--action", "member.removed"]) as unknown as { data: Array<{ actor: string; target: string }> };
      assert.deepEqual(
        audit.data.map((r) => [r.actor, r.target]),
        [
          ["cli", `member:${ops.member_id as unknown as string}`],
          ["cli", `member:${dev.member_id as unknown as string}`],
        ],
      );
      // The table gives each record's detail too, as --json does.
      const lines = cli(["audit", "--action", "member.removed"]).stdout.trim().split("\n");
      assert.match(lines[0]!, /\bDETAIL$/i);
      assert.match(lines[1]!, /member\.removed .* email=ops@example\.com/);
    } finally {
      await stores.close();
    }
  });

  it("members remove revokes the keys the member made in the dashboard, or keeps them with --keep-keys", async () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const run = (args: string[]) => cliJson([...args, "--data-dir", dataDir], env) as Record<string, unknown>;
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir], { env, encoding: "utf8" });
    const { accountId } = cliKey(dataDir, "solo", env);
    const accountKey = (cliJson(["keys", "list", "--account", accountId, "--data-dir", dataDir], env) as unknown as Array<{ id: string }>)[0]!.id;
    const joined = async (email: string): Promise<{ memberId: string; keyId: string }> => {
      const invited = run(["members", "invite", "--account", accountId, "--email", email]);
      const stores = await createStore({ dataDir });
      try {
        const token = /#invite=(\w+)$/.exec(invited.invite_path as string)![1]!;
        await new People(stores, undefined).acceptInvitation(token, "a long enough password", "10.0.0.1");
        const made = await new AccountService(stores, loadConfig({ dataDir }, {}).plans).createKey(
          { actor: `member:${email}`, source: null, requestId: null },
          accountId,
          "live",
          "laptop",
          invited.member_id as string,
        );
        return { memberId: invited.member_id as string, keyId: made.record.id };
      } finally {
        await stores.close();
      }
    };
    const keys = () =>
      Object.fromEntries(
        (cliJson(["keys", "list", "--account", accountId, "--data-dir", dataDir], env) as unknown as Array<Record<string, unknown>>).map((k) => [
          k.id,
          k.revoked_at !== null,
        ]),
      );
    const dev = await joined("dev@example.com");
    const ops = await joined("ops@example.com");
    // The table shows which keys go with a member before the operator removes them.
    const table = cli(["keys", "list", "--account", accountId]).stdout;
    assert.match(table, new RegExp(`^${dev.keyId}\\s+laptop\\s+live\\s+\\S+\\s+\\S+ \\S+\\s+${dev.memberId}\\s`, "m"));
    assert.match(table, new RegExp(`^${accountKey}\\s+-\\s+live\\s+\\S+\\s+\\S+ \\S+\\s+account\\s`, "m"), "an operator's key is the account's own");
    const removed = run(["members", "remove", "--account", accountId, "--member", dev.memberId]);
    assert.deepEqual(removed.revoked_keys, [dev.keyId]);
    assert.deepEqual(keys(), { [accountKey]: false, [dev.keyId]: true, [ops.keyId]: false }, "only the key dev made is revoked");
    const kept = cli(["members", "remove", "--account", accountId, "--email", "ops@example.com", "--keep-keys"]);
    assert.equal(kept.status, 0, kept.stderr);
    assert.match(kept.stdout, /the keys they created keep working as the account's own/);
    assert.deepEqual(keys(), { [accountKey]: false, [dev.keyId]: true, [ops.keyId]: false });
    const none = await joined("new@example.com");
    cli(["keys", "revoke", none.keyId]);
    assert.match(cli(["members", "remove", "--account", accountId, "--email", "new@example.com"]).stdout, /they had created no unrevoked key/);
  });

  it("holds names to the API's length limits: account names 200, key names 100", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir], { env, encoding: "utf8" });
    const long = cli(["accounts", "create", "--plan", "solo", "--name", "n".repeat(201)]);
    assert.equal(long.status, 2);
    assert.match(long.stderr, /^alveare: Invalid 'name': must be at most 200 characters long\.$/m);
    const account = cliJson(["accounts", "create", "--plan", "solo", "--name", "n".repeat(200), "--data-dir", dataDir], env) as { id: string };
    const longKey = cli(["keys", "create", "--account", account.id, "--name", "k".repeat(101)]);
    assert.equal(longKey.status, 2);
    assert.match(longKey.stderr, /^alveare: Invalid 'name': must be at most 100 characters long\.$/m);
    assert.deepEqual(cliJson(["keys", "list", "--account", account.id, "--data-dir", dataDir], env), [], "nothing was created");
    assert.equal(
      (cliJson(["keys", "create", "--account", account.id, "--name", "k".repeat(100), "--data-dir", dataDir], env) as { name: string }).name.length,
      100,
    );
  });

  it("refuses an empty or blank key name as a usage error; a key without --name stays nameless", () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir], { env, encoding: "utf8" });
    const account = cliJson(["accounts", "create", "--plan", "solo", "--name", "Acme", "--data-dir", dataDir], env) as { id: string };
    for (const name of ["", "   "]) {
      const r = cli(["keys", "create", "--account", account.id, "--name", name]);
      assert.equal(r.status, 2, JSON.stringify(name));
      assert.match(r.stderr, /^alveare: Invalid 'name': the key name must not be empty; leave it out for a key without a name\.$/m);
    }
    assert.deepEqual(cliJson(["keys", "list", "--account", account.id, "--data-dir", dataDir], env), [], "nothing was created");
    assert.equal((cliJson(["keys", "create", "--account", account.id, "--data-dir", dataDir], env) as { name: unknown }).name, null);
    // Kept without edge spaces, as the dashboard and the admin API keep names.
    const spaced = cliJson(["keys", "create", "--account", account.id, "--name", "  deploy bot ", "--data-dir", dataDir], env) as { name: string };
    assert.equal(spaced.name, "deploy bot");
  });

  it("refuses control characters in names and e-mails, and prints those an older version stored escaped", async () => {
    const dataDir = tempDir();
    const env = cleanEnv();
    const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, "--data-dir", dataDir], { env, encoding: "utf8" });
    const hostile = "ok\u001b[2J\u001b[31mFAKE\u001b[0m\r\nline2\u0007\u009b";
    const refused = cli(["accounts", "create", "--plan", "solo", "--name", hostile]);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /^alveare: Invalid 'name': must not contain control characters/m);
    const account = cliJson(["accounts", "create", "--plan", "solo", "--name", "Acme", "--data-dir", dataDir], env) as { id: string };
    const key = cli(["keys", "create", "--account", account.id, "--name", hostile]);
    assert.equal(key.status, 2);
    assert.match(key.stderr, /^alveare: Invalid 'name': must not contain control characters/m);
    const invite = cli(["members", "invite", "--account", account.id, "--email", "dev\u001b@example.com"]);
    assert.equal(invite.status, 2);
    assert.match(invite.stderr, /^alveare: Invalid 'email': must not contain control characters/m);
    const unknownPlan = cli(["accounts", "update", account.id, "--plan", "x\u001b[2J"]);
    assert.equal(unknownPlan.status, 2);
    assert.match(unknownPlan.stderr, /x\\u001b\[2J/, "an echoed value is escaped in the error line too");

    // Rows as an older version, which took any name, could have written them.
    const stores = await createStore({ dataDir });
    try {
      await stores.accounts.createAccount({ id: "acct_old", name: hostile, plan: "solo", status: "active", createdAt: new Date().toISOString() });
      const record = {
        accountId: "acct_old",
        name: hostile,
        mode: "live" as const,
        prefix: "alv_live_old",
        lastUsedAt: null,
        revokedAt: null,
        createdBy: null,
      };
      await stores.accounts.createKey({ ...record, id: "key_old", createdAt: new Date().toISOString() }, "hash-old", { unrevoked: 10 });
      await stores.audit.record(
        { actor: `member:${hostile}`, source: null, requestId: null },
        { action: "key.created", accountId: "acct_old", target: "key:key_old" },
      );
    } finally {
      await stores.close();
    }
    const escaped = "ok\\u001b[2J\\u001b[31mFAKE\\u001b[0m\\u000d\\u000aline2\\u0007\\u009b";
    for (const args of [["accounts", "list"], ["keys", "list", "--account", "acct_old"], ["audit"]]) {
      const r = cli(args);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/u, `${args.join(" ")}: no control character but the line ends`);
      assert.ok(r.stdout.includes(escaped), `${args.join(" ")}: ${r.stdout}`);
    }
    assert.equal(
      (cliJson(["keys", "list", "--account", "acct_old", "--data-dir", dataDir], env) as unknown as Array<{ name: string }>)[0]!.name,
      hostile,
      "--json keeps the name as stored",
    );
  });
});

describe("npm start typed in another directory", () => {
  const root = resolvePath(import.meta.dirname, "..", "..");
  const env = {
    ...process.env,
    ALVEARE_THREADS: "1",
    ALVEARE_METRICS_PORT: "0",
    ALVEARE_LOG_FORMAT: "json",
    ALVEARE_CONFIG: "",
    ALVEARE_DATA_DIR: "",
  };

  it("keeps its data in the package's directory, and says where CLI commands reach it", async () => {
    // A directory inside the package, so npm finds it; test-artifacts/ is ignored by git.
    mkdirSync(join(root, "test-artifacts"), { recursive: true });
    const here = mkdtempSync(join(root, "test-artifacts", "npm-start-"));
    const dataDir = tempDir();
    try {
      const npm = spawn("npm", ["start", "--silent", "--", "--port", "0", "--model", await tinyModel()], {
        cwd: here,
        env: { ...env, ALVEARE_DATA_DIR: dataDir },
      });
      let out = "";
      npm.stdout.on("data", (c: Buffer) => (out += c.toString()));
      const exited = once(npm, "exit");
      for (let i = 0; i < 600 && !/"url":"http/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      npm.kill("SIGTERM");
      await exited;
      npm.stdout.destroy();
      const warning = out
        .split("\n")
        .filter((line) => line.includes('"typed_in"'))
        .map((line) => JSON.parse(line) as { typed_in: string; runs_in: string; msg: string })[0];
      assert.ok(warning !== undefined, out);
      assert.equal(warning.typed_in, here);
      assert.equal(warning.runs_in, root);
      assert.match(warning.msg, new RegExp(`given --data-dir ${dataDir}`));
    } finally {
      rmSync(here, { recursive: true, force: true });
    }
  });

  it("says that npm keeps options given before `--` for itself", () => {
    const run = spawnSync("npm", ["start", "--silent", "--port", "9000"], { cwd: root, env, encoding: "utf8" });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /serve takes no arguments, got '9000'; npm passes options on only after --: npm start -- --port 9000/);
  });
});

describe("npm start under a supervisor", () => {
  it("hands SIGTERM to the server (the script execs it): the server drains and stops, leaving nothing running", async () => {
    const root = resolvePath(import.meta.dirname, "..", "..");
    const npm = spawn("npm", ["start", "--silent", "--", "--port", "0", "--model", await tinyModel(), "--data-dir", tempDir()], {
      cwd: root,
      env: { ...process.env, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0", ALVEARE_LOG_FORMAT: "json", ALVEARE_CONFIG: "" },
    });
    let out = "";
    npm.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const exited = once(npm, "exit");
    for (let i = 0; i < 600 && !/"url":"http/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    const url = /"url":"(http:[^"]+)"/.exec(out)?.[1];
    const pid = Number(/"pid":(\d+)/.exec(out)?.[1]);
    assert.ok(url !== undefined && pid > 0, out);
    try {
      assert.equal((await fetch(`${url}/health`)).status, 200);
      npm.kill("SIGTERM"); // as a supervisor stops what it started: npm, not the server
      await exited;
      npm.stdout.destroy(); // a server left running would hold the pipe open
      assert.match(out, /"msg":"stopped"/, "the server drained and said so");
      await assert.rejects(fetch(`${url}/health`), "nothing answers any more");
    } finally {
      try {
        process.kill(pid, "SIGKILL"); // only when it was left running
      } catch {
        // Gone, as it should be.
      }
    }
  });
});
