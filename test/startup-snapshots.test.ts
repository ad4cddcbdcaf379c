import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { EmbeddedEngine, type PromptCacheStats } from "../src/engines/embedded/embedded-engine.js";
import { embeddedEngines } from "../src/engines/embedded/embedded-kind.js";
import { labelTokens } from "../src/engines/embedded/label-scores.js";
import type { ChatMessage } from "../src/engines/types.js";
import { createLogger } from "../src/logger.js";
import { defaultSpecialists } from "../src/specialists/defaults.js";
import { ConfigError } from "../src/config/config-error.js";
import { CLI_PATH, cliKey, configFor, LogCapture, postJson, startTestServer, tempDir, tinyModel } from "./helpers/fixtures.js";

/** Padded like real specialists' prompts (instructions, examples), so every prefix is long enough to be snapshotted. */
const EXAMPLES = Array.from({ length: 4 }, (_, i) => `Example ${i + 1}: the user asks about the quarter; you answer with the figure only.`).join(
  "\n",
);

const specialists = defaultSpecialists()
  .filter((s) => s.kind !== "embeddings")
  .slice(0, 4)
  .map((s) => ({ id: s.id, systemPrompt: `${s.systemPrompt}\n\n${EXAMPLES}` }));

/** The first four specialists on the tiny model, one engine (one model file), snapshots built at start-up. */
async function startSpecialists(prefixSnapshotBytes?: number) {
  const logs = new LogCapture();
  const modelPath = await tinyModel();
  const started = await embeddedEngines.start(
    specialists.map((s) => ({
      id: s.id,
      contextSize: 1024,
      engine: { kind: "embedded" as const, model: modelPath },
      systemPrompt: s.systemPrompt,
    })),
    {
      settings: { parallel: 2, queue: 8, threads: 1, ...(prefixSnapshotBytes === undefined ? {} : { prefixSnapshotBytes }) },
      models: {},
      dataDir: tempDir(),
      logger: createLogger("info", logs),
    },
  );
  return { started, specialists, logs };
}

const ask = (engine: EmbeddedEngine, messages: ChatMessage[]) =>
  engine.generate({ messages, maxTokens: 1, temperature: 0, topP: 1, stop: [], constraint: { type: "text" }, signal: new AbortController().signal });

describe("system prompt snapshots at start-up", () => {
  it("builds every specialist's prefix when the engine loads, logs their memory, and a first request evaluates only its own turn", async () => {
    const { started, specialists, logs } = await startSpecialists();
    try {
      const engine = started.engines.get(specialists[0]!.id);
      assert.ok(engine instanceof EmbeddedEngine);
      // One model file: every specialist shares this engine.
      for (const s of specialists) assert.equal(started.engines.get(s.id), engine);
      assert.equal(engine.promptCache.snapshotBuilds, specialists.length, "one snapshot per specialist, built before any request");

      const ready = logs.records().find((r) => r.msg === "system prompt snapshots ready");
      assert.ok(ready !== undefined, "start-up logs the snapshots");
      assert.equal(ready.built, specialists.length);
      assert.ok(typeof ready.totalBytes === "number" && ready.totalBytes > 0);
      assert.ok(typeof ready.budgetBytes === "number" && ready.totalBytes <= ready.budgetBytes, "within the memory budget");

      for (const s of specialists) {
        const messages: ChatMessage[] = [
          { role: "system", content: s.systemPrompt },
          { role: "user", content: `what was the revenue of ${s.id} this quarter` },
        ];
        const before: PromptCacheStats = engine.promptCache;
        const result = await ask(engine, messages);
        const after: PromptCacheStats = engine.promptCache;
        assert.equal(result.promptTokens, engine.countPromptTokens(messages));
        assert.equal(after.snapshotBuilds, before.snapshotBuilds, `${s.id}: the first request builds nothing`);
        assert.equal(
          after.promptTokensEvaluated - before.promptTokensEvaluated,
          engine.countPromptTokens(messages) - engine.snapshotPrefixLength(messages),
          `${s.id}: its first request evaluates only the suffix`,
        );
      }
    } finally {
      await started.close();
    }
  });

  it("are kept before callers' own system prompts: a flood of those does not evict them", async () => {
    const first = await startSpecialists();
    const needed = first.logs.records().find((r) => r.msg === "system prompt snapshots ready")!.totalBytes as number;
    await first.started.close();
    // Room for the specialists' snapshots and not much more: every caller's snapshot has to evict something.
    const { started, logs } = await startSpecialists(needed + Math.ceil(needed / 8));
    try {
      const engine = started.engines.get(specialists[0]!.id) as EmbeddedEngine;
      for (let i = 0; i < 4; i++) {
        // A caller's own system message makes a prefix of its own (snapshotted on first use).
        const own = `${specialists[i]!.systemPrompt}\n\nCaller ${i}: ${EXAMPLES}`;
        await ask(engine, [
          { role: "system", content: own },
          { role: "user", content: "hello" },
        ]);
      }
      assert.ok(
        logs.records().some((r) => r.msg === "prefix snapshot evicted"),
        "the callers' snapshots did not fit beside the specialists' (the test would prove nothing)",
      );
      for (const s of specialists) {
        const before = engine.promptCache;
        await ask(engine, [
          { role: "system", content: s.systemPrompt },
          { role: "user", content: "and now?" },
        ]);
        assert.equal(engine.promptCache.snapshotBuilds, before.snapshotBuilds, `${s.id}: its snapshot was still there`);
      }
    } finally {
      await started.close();
    }
  });

  it("refuse to start a specialist whose system prompt leaves no room for a request, naming what to change; one token more starts", async () => {
    const model = await tinyModel();
    // ~750 tokens on the tiny model's vocabulary.
    const systemPrompt = "Answer briefly. ".repeat(50);
    const start = (contextSize: number) =>
      embeddedEngines.start([{ id: "wordy", contextSize, engine: { kind: "embedded" as const, model }, systemPrompt }], {
        settings: { parallel: 1, queue: 4, threads: 1 },
        models: {},
        dataDir: tempDir(),
        logger: createLogger("silent"),
      });
    const roomy = await start(1024);
    const engine = roomy.engines.get("wordy");
    assert.ok(engine instanceof EmbeddedEngine);
    const emptyTurn: ChatMessage[] = [
      { role: "system", content: systemPrompt },
      { role: "user", content: "" },
    ];
    // The least a request can be: the system prompt and an empty user turn.
    const least = engine.countPromptTokens(emptyTurn);
    await roomy.close();

    await assert.rejects(start(least), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.field, "specialists.wordy.system_prompt");
      assert.match(error.message, new RegExp(`it is ${least} tokens .* no room for an answer in the specialist's context of ${least} tokens`));
      assert.match(error.message, /raise specialists\.wordy\.context_size/);
      return true;
    });
    const tight = await start(least + 1);
    try {
      const answered = await ask(tight.engines.get("wordy") as EmbeddedEngine, emptyTurn);
      assert.equal(answered.completionTokens, 1, "such a request is answered, with the one token there is room for");
    } finally {
      await tight.close();
    }
  });

  it("refuse to start a label specialist whose system prompt leaves no room for its longest label; room for it starts", async () => {
    const model = await tinyModel();
    const systemPrompt = "Sort the ticket. ".repeat(20);
    const labels = ["bug", "a request for a feature nobody asked for yet"];
    const start = (contextSize: number) =>
      embeddedEngines.start(
        [{ id: "triage", contextSize, engine: { kind: "embedded" as const, model }, systemPrompt, output: { type: "labels", labels } }],
        {
          settings: { parallel: 1, queue: 4, threads: 1 },
          models: {},
          dataDir: tempDir(),
          logger: createLogger("silent"),
        },
      );
    const roomy = await start(1024);
    const engine = roomy.engines.get("triage") as EmbeddedEngine;
    const emptyTurn: ChatMessage[] = [
      { role: "system", content: systemPrompt },
      { role: "user", content: "" },
    ];
    const least = engine.countPromptTokens(emptyTurn);
    const longest = Math.max(...labels.map((label) => labelTokens(engine.model, label).length));
    assert.ok(longest > 1, `${longest} tokens`);
    await roomy.close();

    // Scoring takes each label's tokens but its last after the prompt. One position short of that: every
    // request would be refused.
    await assert.rejects(start(least + longest - 2), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.field, "specialists.triage.system_prompt");
      assert.match(
        error.message,
        new RegExp(`no room for its longest label \\(${longest} tokens\\) in the specialist's context of ${least + longest - 2} tokens`),
      );
      return true;
    });
    const tight = await start(least + longest - 1);
    try {
      const answered = await (tight.engines.get("triage") as EmbeddedEngine).generate({
        messages: emptyTurn,
        maxTokens: 64,
        temperature: 0,
        topP: 1,
        stop: [],
        constraint: { type: "labels", labels },
        signal: new AbortController().signal,
      });
      assert.ok(labels.includes(answered.text), answered.text);
    } finally {
      await tight.close();
    }
  });

  it("larger than the whole budget, are saved and dropped once per prefix, not again on every request", async () => {
    const { started, specialists, logs } = await startSpecialists(1);
    try {
      const engine = started.engines.get(specialists[0]!.id);
      assert.ok(engine instanceof EmbeddedEngine);
      const tooLarge = () => logs.records().filter((r) => String(r.msg).startsWith("prefix snapshot is larger than the whole budget")).length;
      assert.equal(tooLarge(), specialists.length, "each prefix found too large once, at start-up");
      const ready = logs.records().find((r) => r.msg === "system prompt snapshots ready");
      assert.equal(ready?.built, 0, "none kept, none counted as built");
      const before = engine.promptCache;
      // Four specialists on two sequences: each request finds its sequence holding another prefix.
      for (let round = 0; round < 3; round++) {
        for (const s of specialists) {
          const result = await ask(engine, [
            { role: "system", content: s.systemPrompt },
            { role: "user", content: `round ${round}` },
          ]);
          assert.ok(result.completionTokens >= 0);
        }
      }
      assert.equal(tooLarge(), specialists.length, "no prefix saved again only to be dropped");
      assert.ok(engine.promptCache.promptTokensEvaluated > before.promptTokensEvaluated, "the prefixes are evaluated instead");
      assert.equal(engine.promptCache.snapshotBuilds, 0);
    } finally {
      await started.close();
    }
  });

  it("off (0), leave no directory behind for the states of several choices once the server closes", async () => {
    const choiceDirectories = (): Set<string> => new Set(readdirSync(tmpdir()).filter((name) => name.startsWith("alveare-choices-")));
    const before = choiceDirectories();
    const server = await startTestServer({ engine: { parallel: 2, queue: 8, snapshot_memory_mb: 0 } });
    let made: string[] = [];
    try {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "hi" }],
        n: 2,
        max_tokens: 4,
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      made = [...choiceDirectories()].filter((name) => !before.has(name));
      assert.equal(made.length, 1, "the choices' states went to a directory of the engine's own");
    } finally {
      await server.close();
    }
    for (const name of made) assert.equal(existsSync(join(tmpdir(), name)), false, `${name} is removed at close`);
  });

  it("take the memory engine.snapshot_memory_mb gives them, or none at 0", async () => {
    const ready = async (engine: Record<string, unknown>) => {
      const server = await startTestServer({ engine: { parallel: 2, queue: 8, ...engine } });
      try {
        return server.logs.records().find((r) => r.msg === "system prompt snapshots ready");
      } finally {
        await server.close();
      }
    };
    assert.equal((await ready({ snapshot_memory_mb: 3 }))?.budgetBytes, 3 * 1024 * 1024);
    assert.equal((await ready({}))?.budgetBytes, 512 * 1024 * 1024, "512 MiB unless told");
    assert.equal(await ready({ snapshot_memory_mb: 0 }), undefined, "0: no snapshots are built");
    for (const bad of [-1, 1.5, "lots"]) {
      assert.throws(() => configFor({ engine: { snapshot_memory_mb: bad } }), ConfigError, String(bad));
    }
  });
});

describe("temporary state files when the process is stopped early", () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  });

  /** `alveare serve` as its own process, with a temp directory of its own to look into. */
  async function serveAlone(engine: Record<string, unknown>, systemPromptWords: number) {
    const dir = tempDir();
    const temp = join(dir, "tmp");
    mkdirSync(temp);
    // A model slow enough that evaluating the system prompts takes a while, as a real one does.
    const model = await tinyModel({ layers: 8, embedding: 512, heads: 8, feedForward: 1024, vocabulary: 4000 });
    const prompt = (name: string): string => `You are ${name}. ${"Answer with the figure only. ".repeat(systemPromptWords / 5)}`;
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        port: 0,
        models: { base: model },
        engine: { parallel: 2, queue: 8, ...engine },
        specialists: Object.fromEntries(
          ["alpha", "beta", "gamma", "delta"].map((name) => [name, { description: name, system_prompt: prompt(name), output: { type: "text" } }]),
        ),
        plans: { all: { requests_per_minute: 1000, requests_per_month: 100_000, specialists: "*" } },
      }),
    );
    const { key } = cliKey(join(dir, "data"), "all", { ...process.env, ALVEARE_CONFIG: config });
    const child = spawn(process.execPath, [CLI_PATH, "serve", "--config", config, "--data-dir", join(dir, "data")], {
      env: { ...process.env, TMPDIR: temp, ALVEARE_THREADS: "1", ALVEARE_METRICS_PORT: "0", ALVEARE_LOG_FORMAT: "json" },
    });
    let out = "";
    children.push(child);
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const until = async (what: string, done: () => boolean): Promise<void> => {
      for (let i = 0; i < 1200 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(done(), `${what}: ${out}`);
    };
    return { child, temp, exited, until, key, output: () => out };
  }

  it("a stop during start-up exits at once (143 for SIGTERM) and leaves no snapshot behind", async () => {
    const server = await serveAlone({}, 600);
    await server.until("a first snapshot saved", () => server.output().includes("prefix snapshot saved"));
    assert.equal(readdirSync(server.temp).filter((name) => name.startsWith("alveare-prefix-")).length, 1, "the snapshots' directory exists");
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 143);
    assert.match(server.output(), /stopped during start-up/);
    assert.doesNotMatch(server.output(), /alveare is serving/, "it was stopped before serving");
    assert.deepEqual(readdirSync(server.temp), [], "the snapshots' directory is removed");
  });

  it("a second Ctrl-C while several choices run (snapshots off) leaves no choices' states behind", async () => {
    const server = await serveAlone({ snapshot_memory_mb: 0 }, 20);
    await server.until("serving", () => /"url":"(http:[^"]+)"/.test(server.output()));
    const url = /"url":"(http:[^"]+)"/.exec(server.output())![1]!;
    const pending = fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${server.key}` },
      body: JSON.stringify({ model: "alveare-alpha", messages: [{ role: "user", content: "hi" }], n: 2, max_tokens: 2000 }),
    }).catch(() => undefined);
    await server.until("the choices' directory made", () => readdirSync(server.temp).some((name) => name.startsWith("alveare-choices-")));
    server.child.kill("SIGINT");
    // Two signals sent at once arrive as one, and one within half a second of the first is that one relayed
    // (npm start): the second Ctrl-C comes later, while the choices still run.
    await server.until("draining", () => server.output().includes("shutting down"));
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(
      readdirSync(server.temp).some((name) => name.startsWith("alveare-choices-")),
      "the choices still run",
    );
    server.child.kill("SIGINT");
    assert.equal(await server.exited, 130);
    await pending;
    assert.deepEqual(readdirSync(server.temp), [], "the choices' directory is removed at exit");
  });
});
