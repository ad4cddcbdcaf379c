import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { engineKinds } from "../src/engines/engine-kinds.js";
import type { RemoteEngineConfig } from "../src/engines/remote/remote-kind.js";

const remote = (baseUrl: string): RemoteEngineConfig => ({
  kind: "remote",
  upstreams: [{ baseUrl, model: "m" }],
  connectTimeoutMs: 1000,
  readTimeoutMs: 1000,
  answerTimeoutMs: 600_000,
  healthCheckIntervalMs: 60_000,
});
const environment = { settings: { parallel: 1, queue: 0, threads: 1 }, models: {}, dataDir: ".", logger: pino({ level: "silent" }) };

describe("engine kinds", () => {
  it("are keyed by the kind tag their factory serves", () => {
    for (const [key, factory] of Object.entries(engineKinds)) assert.equal(factory.kind, key);
  });

  it("share one engine between specialists with the same settings, and only those", async () => {
    const started = await engineKinds.remote.start(
      [
        { id: "a", contextSize: 64, engine: remote("http://127.0.0.1:9/v1") },
        { id: "b", contextSize: 128, engine: remote("http://127.0.0.1:9/v1") },
        { id: "c", contextSize: 64, engine: remote("http://127.0.0.1:10/v1") },
      ],
      environment,
    );
    try {
      assert.deepEqual([...started.engines.keys()], ["a", "b", "c"]);
      assert.equal(started.engines.get("a"), started.engines.get("b"));
      assert.notEqual(started.engines.get("a"), started.engines.get("c"));
    } finally {
      await started.close();
    }
  });
});
