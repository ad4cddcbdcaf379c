import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { closest } from "../src/closest-name.js";

const SPECIALISTS = ["classify", "summarise", "extract", "qa", "chat", "code"];

describe("closest", () => {
  it("names the candidate a slip meant, the nearest first, and none past the edits allowed", () => {
    assert.equal(closest("summarize", SPECIALISTS), "summarise");
    assert.equal(closest("clasify", SPECIALISTS), "classify");
    assert.equal(closest("cod", SPECIALISTS), "code");
    assert.equal(closest("translate", SPECIALISTS), undefined);
    assert.equal(closest("summarize", SPECIALISTS, 0), undefined);
  });

  it("does not count case as an edit", () => {
    assert.equal(closest("CLASSIFY", SPECIALISTS, 1), "classify");
    assert.equal(closest("Summarize", SPECIALISTS, 1), "summarise");
    assert.equal(closest("alveare_threds", ["ALVEARE_THREADS", "ALVEARE_PORT"]), "ALVEARE_THREADS");
  });

  // Before, every candidate cost a full table of name × candidate: a 1 MB model name took ~250 ms of the event loop.
  it("rules out a name far longer than every candidate without comparing it character by character", () => {
    assert.equal(closest(`summarise${"x".repeat(3)}`, SPECIALISTS), "summarise");
    // 100 million characters: minutes of table without the bound, so the child is killed at 10 s; at once with it.
    const script = `import { closest } from ${JSON.stringify(new URL("../src/closest-name.js", import.meta.url).href)};
      process.stdout.write(String(closest("x".repeat(100_000_000), ${JSON.stringify(SPECIALISTS)})));`;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 10_000 });
    assert.equal(run.signal, null, "it finished");
    assert.equal(run.stdout, "undefined");
  });
});
