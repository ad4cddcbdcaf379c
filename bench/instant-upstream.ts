/** An OpenAI-compatible upstream that answers at once: the gate benchmark's engine, so only our path is measured. */
import { createServer } from "node:http";

const body = JSON.stringify({
  id: "chatcmpl-instant",
  object: "chat.completion",
  created: 0,
  model: "instant",
  choices: [{ index: 0, message: { role: "assistant", content: "positive" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 },
});
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body));
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write("ready\n"));
