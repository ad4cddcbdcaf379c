import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { tempDir } from "./helpers/fixtures.js";

const PREPARE = new URL("../../scripts/prepare.mjs", import.meta.url).pathname;

/** A project whose build only leaves a mark, with or without a built CLI; `prepare` run there as npm would under `command`. */
function prepareUnder(command: string, built: boolean): boolean {
  const dir = tempDir("alveare-prepare-");
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "p", scripts: { build: "node build.cjs" } }));
  writeFileSync(join(dir, "build.cjs"), 'require("fs").writeFileSync("built", "");');
  if (built) {
    mkdirSync(join(dir, "dist", "src", "cli"), { recursive: true });
    writeFileSync(join(dir, "dist", "src", "cli", "main.js"), "");
  }
  const run = spawnSync(process.execPath, [PREPARE], { cwd: dir, env: { ...process.env, npm_command: command }, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  return existsSync(join(dir, "built"));
}

describe("the prepare script", () => {
  it("builds after npm ci and npm install, and not again when the first npx alveare installs the built checkout", () => {
    assert.equal(prepareUnder("ci", true), true);
    assert.equal(prepareUnder("install", false), true);
    // The first `npx alveare` rebuilt the whole project (~25 s, printing nothing) before answering.
    assert.equal(prepareUnder("exec", true), false);
    assert.equal(prepareUnder("exec", false), true, "a checkout not built yet is built, whoever asks");
  });
});
