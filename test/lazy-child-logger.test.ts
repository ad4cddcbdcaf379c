import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger } from "../src/logger.js";
import { LazyChildLogger } from "../src/server/lazy-child-logger.js";
import { LogCapture } from "./helpers/fixtures.js";

describe("the per-request logger made on first use", () => {
  it("writes the lines a pino child would, with its bindings and the parent's redaction", async () => {
    const out = new LogCapture();
    const parent = createLogger("info", out);
    const lazy = new LazyChildLogger(parent, { request_id: "req-1" }, {});
    lazy.error({ err: new Error("boom"), authorization: "Bearer secret" }, "generation failed");
    parent.child({ request_id: "req-1" }, {}).error({ err: new Error("boom"), authorization: "Bearer secret" }, "generation failed");
    await new Promise((r) => setImmediate(r));
    const [ours, pinos] = out.records();
    assert.equal(ours!.request_id, "req-1");
    assert.equal(ours!.authorization, "[redacted]");
    const strip = (r: Record<string, unknown>) => ({ ...r, time: 0, err: { ...(r.err as object), stack: "" } });
    assert.deepEqual(strip(ours!), strip(pinos!));
  });

  it("makes no child for levels that are off, and honours a level of its own", async () => {
    const out = new LogCapture();
    const parent = createLogger("info", out);
    const quiet = new LazyChildLogger(parent, { request_id: "req-2" }, {});
    quiet.debug("not written");
    assert.equal(quiet.level, "info");
    assert.equal(quiet.isLevelEnabled("debug"), false);
    const verbose = new LazyChildLogger(parent, { request_id: "req-3" }, { level: "debug" });
    assert.equal(verbose.isLevelEnabled("debug"), true);
    verbose.debug("written");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      out.records().map((r) => [r.request_id, r.msg]),
      [["req-3", "written"]],
    );
  });
});
