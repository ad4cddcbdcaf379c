import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { loadConfig } from "../src/config/config.js";
import { unknownVariables } from "../src/config/unknown-variables.js";
import { spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";

const remote = {
  specialists: {
    elsewhere: {
      description: "d",
      system_prompt: "",
      remote: { base_url: "http://127.0.0.1:9/v1", model: "m", api_key_env: "ALVEARE_UPSTREAM_KEY" },
    },
  },
};

describe("ALVEARE_* variables nothing reads", () => {
  it("are named, with the setting a slip of a few letters away meant", () => {
    const config = loadConfig({}, {});
    const env = {
      ALVEARE_DRAIN_SECOND: "5",
      ALVEARE_PROT: "9000",
      ALVEARE_SOMETHING_ELSE_ENTIRELY: "x",
      ALVEARE_PORT: "8080",
      ALVEARE_API_KEY: "alv_live_x",
      ALVEARE_BASE_URL: "http://127.0.0.1:8080",
      ALVEARE_LOG: "debug",
      ALVEARE_TEST_POSTGRES_URL: "postgres://x",
      HOME: "/root",
    };
    assert.deepEqual(unknownVariables(env, config), [
      { name: "ALVEARE_DRAIN_SECOND", didYouMean: "ALVEARE_DRAIN_SECONDS" },
      { name: "ALVEARE_PROT", didYouMean: "ALVEARE_PORT" },
      { name: "ALVEARE_SOMETHING_ELSE_ENTIRELY", didYouMean: undefined },
    ]);
  });

  it("know every ALVEARE_* variable the server's code reads (a setting added later is not warned about as unknown)", () => {
    // Read from the sources, so a new env.ALVEARE_… read that the known list lacks fails here, not in an operator's log.
    const src = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src");
    const read = new Set<string>();
    for (const entry of readdirSync(src, { recursive: true, encoding: "utf8" })) {
      if (!entry.endsWith(".ts")) continue;
      for (const m of readFileSync(join(src, entry), "utf8").matchAll(/\benv(?:\.|\[\s*["'])(ALVEARE_[A-Z0-9_]+)/g)) read.add(m[1]!);
    }
    assert.ok(read.size >= 20, `found only ${[...read].join(", ")}`);
    const env = Object.fromEntries([...read].map((name) => [name, "x"]));
    assert.deepEqual(unknownVariables(env, loadConfig({}, {})), []);
  });

  it("know the upstream keys the config names, whatever they are called", () => {
    const dir = tempDir();
    const config = loadConfig({ config: writeConfig(dir) }, {});
    assert.deepEqual(unknownVariables({ ALVEARE_UPSTREAM_KEY: "sk-x" }, config), []);
    assert.deepEqual(unknownVariables({ ALVEARE_UPSTREAM_KEY: "sk-x" }, loadConfig({}, {})).length, 1, "not named by this config: unknown");
  });

  it("get a warning line at start, and the server starts all the same", async () => {
    const { child, url, output } = await spawnServe(["--model", await tinyModel(), "--data-dir", tempDir()], {
      ...process.env,
      ALVEARE_THREADS: "1",
      ALVEARE_METRICS_PORT: "0",
      ALVEARE_MODEL: "",
      ALVEARE_CONFIG: "",
      ALVEARE_DRAIN_SECOND: "5",
    });
    try {
      assert.equal((await fetch(`${url}/health`)).status, 200);
      const line = output()
        .split("\n")
        .find((l) => l.includes("ALVEARE_DRAIN_SECOND "));
      assert.ok(line !== undefined, output());
      const record = JSON.parse(line) as Record<string, unknown>;
      assert.equal(record.level, 40);
      assert.equal(record.variable, "ALVEARE_DRAIN_SECOND");
      assert.equal(record.did_you_mean, "ALVEARE_DRAIN_SECONDS");
      assert.equal(record.msg, "ALVEARE_DRAIN_SECOND is not a setting alveare reads: it is ignored (did you mean ALVEARE_DRAIN_SECONDS?)");
    } finally {
      child.kill("SIGKILL");
    }
  });
});

function writeConfig(dir: string): string {
  const path = `${dir}/alveare.config.json`;
  writeFileSync(path, JSON.stringify(remote));
  return path;
}
