import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { grammarBeginnings, MAX_GRAMMAR_BEGINNINGS } from "../src/engines/embedded/grammar-ambiguity.js";
import { grammarSchemaOf } from "../src/engines/embedded/grammars.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

/** `d0` is an anyOf naming `d1` twice, `d1` naming `d2` twice, …: a string that begins 2^(levels-1) ways. */
function doublingChain(levels: number): Record<string, unknown> {
  const defs: Record<string, unknown> = {};
  for (let i = 0; i < levels; i++) {
    const next = i === levels - 1 ? { type: "string", maxLength: 2 } : { $ref: `#/$defs/d${i + 1}` };
    defs[`d${i}`] = i === levels - 1 ? next : { anyOf: [next, next] };
  }
  return { $defs: defs, $ref: "#/$defs/d0" };
}

const recursive = (alternatives: unknown[]): Record<string, unknown> => ({ $defs: { t: { anyOf: alternatives } }, $ref: "#/$defs/t" });
const listOf = (items: unknown): Record<string, unknown> => ({ type: "array", items });
const SELF = { $ref: "#/$defs/t" };

/** Schemas people write, each of which must stay enforceable. */
const EVERYDAY: Array<[string, Record<string, unknown>]> = [
  ["a tree of lists ending in strings", recursive([listOf(SELF), listOf({ type: "string" })])],
  ["a tree of lists ending in lists of strings", recursive([listOf(SELF), listOf(listOf({ type: "string" }))])],
  ["a recursive list or null", recursive([listOf(SELF), { type: "null" }])],
  [
    "a linked list",
    {
      $defs: {
        node: {
          type: "object",
          properties: { v: { type: "integer" }, next: { anyOf: [{ $ref: "#/$defs/node" }, { type: "null" }] } },
          required: ["v", "next"],
        },
      },
      $ref: "#/$defs/node",
    },
  ],
  ["an enum of 512 values", { type: "string", enum: Array.from({ length: 512 }, (_, i) => `v${i}`) }],
  [
    "a discriminated union",
    {
      anyOf: [
        { type: "object", properties: { kind: { const: "a" }, x: { type: "string" } }, required: ["kind", "x"] },
        { type: "object", properties: { kind: { const: "b" }, y: { type: "number" } }, required: ["kind", "y"] },
      ],
    },
  ],
  [
    "a recursive filter expression (and / or / a comparison)",
    {
      $defs: {
        f: {
          anyOf: [
            { type: "object", properties: { and: listOf({ $ref: "#/$defs/f" }) }, required: ["and"] },
            { type: "object", properties: { or: listOf({ $ref: "#/$defs/f" }) }, required: ["or"] },
            { type: "object", properties: { field: { type: "string" }, eq: { type: "string" } }, required: ["field", "eq"] },
          ],
        },
      },
      $ref: "#/$defs/f",
    },
  ],
  [
    "a UI tree of rows and columns",
    {
      $defs: {
        node: {
          anyOf: ["row", "column"].map((kind) => ({
            type: "object",
            properties: { type: { const: kind }, children: listOf({ $ref: "#/$defs/node" }) },
            required: ["type", "children"],
          })),
        },
      },
      $ref: "#/$defs/node",
    },
  ],
  ["nullable fields by a list of types", { type: "object", properties: { a: { type: ["string", "null"] }, b: { type: ["integer", "null"] } } }],
];

describe("a JSON schema whose values can begin in too many ways for llama.cpp to load its grammar", () => {
  it("counts the ways: alternatives add up through references, doubling at every level that names one definition twice", () => {
    for (const levels of [1, 2, 5, 13])
      assert.equal(grammarBeginnings(grammarSchemaOf(doublingChain(levels))), 2 ** (levels - 1), `${levels} levels`);
    assert.equal(2 ** 12, MAX_GRAMMAR_BEGINNINGS, "13 levels are the most allowed");
    // Inside a property, as deep in the schema as anywhere.
    const inside = { type: "object", properties: { p: { $ref: "#/$defs/d0" } }, required: ["p"], $defs: doublingChain(10).$defs };
    assert.equal(grammarBeginnings(grammarSchemaOf(inside)), 2 ** 9);
  });

  it("refuses more, in milliseconds whatever the depth", () => {
    const started = performance.now();
    for (const levels of [14, 40]) assert.throws(() => grammarSchemaOf(doublingChain(levels)), /can begin in more than 4096 ways/);
    assert.ok(performance.now() - started < 2000);
  });

  it("keeps the schemas people write: trees, linked lists, filter expressions, enums, unions, nullable fields", () => {
    for (const [name, schema] of EVERYDAY) assert.ok(grammarBeginnings(grammarSchemaOf(schema)) <= 512, name);
  });
});

describe("over HTTP, on an embedded specialist", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  const chat = (extra: Record<string, unknown>, messages: unknown[] = [{ role: "user", content: "hi" }]) =>
    postJson(`${server.url}/v1/chat/completions`, { model: "alveare-chat", max_tokens: 4, messages, ...extra });
  const refusal = (json: Record<string, unknown>) => json.error as { code: string; param: string; message: string };

  it("answers such a schema 400 at once, in response_format or in a tool's parameters, and keeps serving", async () => {
    // 2.7 KB: before the limit, llama.cpp walked 2^39 paths on the event loop loading it, and only SIGKILL ended the node.
    const hostile = doublingChain(40);
    const format = await chat({ response_format: { type: "json_schema", json_schema: { name: "x", schema: hostile } } });
    assert.equal(format.status, 400, JSON.stringify(format.json));
    assert.equal(refusal(format.json).code, "invalid_parameter");
    assert.equal(refusal(format.json).param, "response_format.json_schema.schema");
    assert.match(refusal(format.json).message, /can begin in more than 4096 ways/);
    const tool = await chat({
      tools: [
        {
          type: "function",
          function: { name: "f", parameters: { type: "object", properties: { p: { $ref: "#/$defs/d0" } }, $defs: hostile.$defs } },
        },
      ],
      tool_choice: "required",
    });
    assert.equal(tool.status, 400, JSON.stringify(tool.json));
    assert.match(refusal(tool.json).message, /can begin in more than 4096 ways/);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  });

  it("serves the everyday recursive schemas", async () => {
    for (const [name, schema] of EVERYDAY.slice(0, 6)) {
      const answer = await chat({ response_format: { type: "json_schema", json_schema: { name: "x", schema } }, max_tokens: 8 });
      assert.equal(answer.status, 200, `${name}: ${JSON.stringify(answer.json)}`);
    }
  });

  it("replays a call whose arguments nest thousands deep as their text: a 200 or the context's 400, never a 500", async () => {
    const history = (args: string) => [
      { role: "user", content: "hi" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: args } }] },
      { role: "tool", tool_call_id: "c1", content: "ok" },
    ];
    // node-llama-cpp writes parsed arguments back recursively: 5,000 levels overflowed its stack (a 500).
    const tooDeep = await chat({}, history("[".repeat(5000) + "]".repeat(5000)));
    assert.equal(tooDeep.status, 400, JSON.stringify(tooDeep.json));
    assert.equal(refusal(tooDeep.json).code, "context_length_exceeded");
    const deep = await chat({}, history("[".repeat(1500) + "]".repeat(1500)));
    assert.equal(deep.status, 200, JSON.stringify(deep.json));
    // Shallow arguments are still read as JSON, as before.
    assert.equal((await chat({}, history('{"a":[1]}'))).status, 200);
  });
});
