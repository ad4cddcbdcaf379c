/**
 * The least a Node gateway can do per request, as a floor for the gateway bench: node:http in, the body parsed
 * as JSON, forwarded through undici (a kept-alive pool) to the upstream, its answer parsed and written back as
 * JSON. No keys, limits, ledger, log line or validation: what any gateway on Node pays before doing its job.
 * Usage: node dist/bench/bare-proxy.js PORT UPSTREAM_PORT
 */
import { createServer } from "node:http";
import { Agent, request } from "undici";

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const upstream = `http://127.0.0.1:${upstreamPort}/v1/chat/completions`;
const dispatcher = new Agent({ keepAliveTimeout: 60_000, connections: 64 });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const asked = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    request(upstream, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...asked, model: "instant" }),
    })
      .then((answer) => answer.body.json())
      .then(
        (answer) => {
          const text = JSON.stringify(answer);
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
        },
        () => res.writeHead(502).end(),
      );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
