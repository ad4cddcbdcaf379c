import { RemoteEngine } from "../../src/engines/remote/remote-engine.js";

/** A remote engine on one upstream (its base URL, …/v1), its health checks out of the way. */
export const engineOn = (baseUrl: string): RemoteEngine =>
  new RemoteEngine({
    upstreams: [{ baseUrl, model: "m" }],
    connectTimeoutMs: 2000,
    readTimeoutMs: 5000,
    answerTimeoutMs: 600_000,
    healthCheckIntervalMs: 60_000,
  });
