import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from "node-llama-cpp";
import { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { ApiError } from "../src/errors.js";
import type { GenerationRequest, GenerationResult, OutputConstraint } from "../src/engines/types.js";
import { tinyModel } from "./helpers/fixtures.js";

let schemas = 0;
/** A schema no request built before (the grammar cache would answer at once): many properties, so building it takes a while. */
function freshSchema(): OutputConstraint {
  const id = schemas++;
  const properties = Object.fromEntries(
    Array.from({ length: 40 }, (_, i) => [`field_${id}_${i}`, i % 2 === 0 ? { type: "string", maxLength: 8 } : { type: "integer" }]),
  );
  return { type: "json_schema", schema: { type: "object", properties, required: [`field_${id}_0`], additionalProperties: false } };
}

const TEXT: OutputConstraint = { type: "text" };

/**
 * The requests are sent in one synchronous turn, as concurrent arrivals: a request takes its place in the queue
 * before generate() first awaits, so the order and the bound are decided by arrival, not by how long each takes
 * to build its grammar (a plain request, with none to build, would otherwise reach the queue first).
 */
describe("the engine's queue, held from a request's arrival", () => {
  let llama: Llama;
  let model: LlamaModel;
  const engines: EmbeddedEngine[] = [];
  before(async () => {
    llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: await tinyModel(), gpuLayers: 0 });
  });
  after(async () => {
    for (const engine of engines) await engine.close();
    await model.dispose();
    await llama.dispose();
  });

  async function engineWith(sequences: number, maxQueue: number): Promise<EmbeddedEngine> {
    const context = await model.createContext({ contextSize: 512 * sequences, sequences, threads: 1 });
    const engine = new EmbeddedEngine({ name: "queue", model, context, grammars: new GrammarCache(llama), maxQueue });
    engines.push(engine);
    return engine;
  }

  const ask = (engine: EmbeddedEngine, constraint: OutputConstraint, maxTokens: number, onStarted?: () => void): Promise<GenerationResult> =>
    engine.generate({
      messages: [{ role: "user", content: "tell me about the quarter" }],
      maxTokens,
      temperature: 0,
      topP: 1,
      stop: [],
      constraint,
      signal: new AbortController().signal,
      onStarted,
    } satisfies GenerationRequest);

  const refusedCode = (r: PromiseSettledResult<GenerationResult>): string | undefined =>
    r.status === "rejected" ? (r.reason instanceof ApiError ? `${r.reason.status} ${r.reason.code}` : String(r.reason)) : undefined;

  it("counts requests building their grammar against the queue's bound: past it, the later arrivals are refused", async () => {
    const queue = 3;
    const engine = await engineWith(1, queue);
    // The only sequence busy, then queue + 1 requests building grammars, then a plain one.
    const busy = ask(engine, TEXT, 8);
    const building = Array.from({ length: queue + 1 }, () => ask(engine, freshSchema(), 4));
    const plain = ask(engine, TEXT, 4);
    const waiting = engine.queued;
    const settled = await Promise.allSettled([busy, ...building, plain]);
    assert.deepEqual(
      settled.map(refusedCode),
      [undefined, ...Array.from({ length: queue }, () => undefined), "503 overloaded", "503 overloaded"],
      "the one past the bound, and the plain request that came after it, get 503 overloaded",
    );
    assert.equal(waiting, queue, "the first `queue` of them waited while their grammars built");
    assert.equal(engine.queued, 0);
  });

  it("serves in arrival order: a request building a large schema's grammar before a plain one sent right after it", async () => {
    const engine = await engineWith(1, 4);
    const started: string[] = [];
    const results = await Promise.all([
      ask(engine, freshSchema(), 4, () => started.push("schema")),
      ask(engine, TEXT, 4, () => started.push("plain")),
      ask(engine, freshSchema(), 4, () => started.push("second schema")),
    ]);
    assert.deepEqual(started, ["schema", "plain", "second schema"]);
    assert.ok(results.every((r) => !r.aborted));
  });

  it("keeps a sequence for a request building its grammar, but lets a later one take another that is free", async () => {
    const engine = await engineWith(2, 4);
    const started: string[] = [];
    await Promise.all([ask(engine, freshSchema(), 4, () => started.push("schema")), ask(engine, TEXT, 4, () => started.push("plain"))]);
    assert.deepEqual(started, ["plain", "schema"], "the plain request is not held behind a grammar while a sequence is free for each");
  });

  it("refuses a schema it cannot enforce with the same 400, and gives its place to the next in line", async () => {
    const engine = await engineWith(1, 1);
    const unheld: OutputConstraint = { type: "json_schema", schema: { type: "object", not: { required: ["a"] } } };
    const busy = ask(engine, TEXT, 8);
    const refused = ask(engine, unheld, 4);
    // The queue is full while the refused schema is checked: a third request is refused.
    const third = ask(engine, TEXT, 4);
    const settled = await Promise.allSettled([busy, refused, third]);
    assert.equal(refusedCode(settled[2]!), "503 overloaded");
    assert.equal(settled[0]!.status, "fulfilled");
    const error = (settled[1] as PromiseRejectedResult).reason as ApiError;
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_parameter");
    assert.equal(error.param, "response_format.json_schema.schema");
    // Its place is given back: the queue is empty, and the next requests are served.
    assert.equal(engine.queued, 0);
    const after = await Promise.all([ask(engine, TEXT, 2), ask(engine, TEXT, 2)]);
    assert.ok(after.every((r) => !r.aborted));
  });

  it("gives up the place of a request aborted while its grammar builds", async () => {
    const engine = await engineWith(1, 1);
    const controller = new AbortController();
    const busy = ask(engine, TEXT, 8);
    const aborted = engine.generate({
      messages: [{ role: "user", content: "never mind" }],
      maxTokens: 4,
      temperature: 0,
      topP: 1,
      stop: [],
      constraint: freshSchema(),
      signal: controller.signal,
    });
    assert.equal(engine.queued, 1);
    controller.abort();
    assert.equal(engine.queued, 0, "its place is free at once");
    const next = ask(engine, TEXT, 2);
    assert.equal((await aborted).aborted, true);
    assert.equal((await busy).aborted, false);
    assert.equal((await next).aborted, false);
  });
});
