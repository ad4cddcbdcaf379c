import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ChatMLChatWrapper,
  FunctionaryChatWrapper,
  getLlama,
  Llama3_1ChatWrapper,
  MistralChatWrapper,
  QwenChatWrapper,
  type Llama,
} from "node-llama-cpp";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { callSyntaxOf, parseAnswer, ToolAnswerTracker, toolGrammar, type CallSyntax } from "../src/engines/embedded/tool-calls.js";
import { toolFunctions, toolGrammarFor } from "../src/engines/embedded/tool-history.js";
import { StopScanner } from "../src/engines/stop-scanner.js";
import type { ToolCallDelta, ToolRequest } from "../src/engines/tools.js";

const REQUEST: ToolRequest = {
  tools: [
    { name: "a", parameters: { type: "object", properties: { x: { type: "string", enum: ["1", "2"] } } } },
    { name: "b_2", description: "second", parameters: { type: "object", properties: { y: { type: "integer" } } } },
  ],
  choice: "auto",
  parallel: true,
};

/** A syntax with a section around parallel calls, as Qwen-style formats have. */
const SECTIONED: CallSyntax = {
  prefix: "<call>",
  paramsPrefix: "|",
  suffix: "</call {{functionName}}>",
  parallel: { sectionPrefix: "[", betweenCalls: ",", sectionSuffix: "]" },
};

describe("tool call syntax", () => {
  let llama: Llama;
  before(async () => {
    llama = await getLlama({ gpu: false, build: "never" });
  });
  after(async () => {
    await llama.dispose();
  });

  it("compiles a grammar for every choice under the formats node-llama-cpp knows", async () => {
    const grammars = new GrammarCache(llama);
    const wrappers = [new ChatMLChatWrapper(), new Llama3_1ChatWrapper(), new QwenChatWrapper(), new FunctionaryChatWrapper()];
    for (const wrapper of wrappers) {
      for (const choice of ["auto", "required", { name: "b_2" }] as const) {
        for (const parallel of [true, false]) {
          const grammar = await toolGrammarFor(grammars, callSyntaxOf(wrapper), { ...REQUEST, choice, parallel });
          assert.match(grammar.grammar, /root ::=/, wrapper.wrapperName);
        }
      }
    }
  });

  it("parses several calls in a section, and reports them piece by piece", () => {
    const output = '[<call>a|{"x": "1"}</call a>,<call>b_2|{"y": 12}</call b_2>]';
    const answer = parseAnswer(output, SECTIONED, true, true);
    assert.deepEqual(answer, {
      kind: "calls",
      calls: [
        { name: "a", arguments: '{"x": "1"}', complete: true },
        { name: "b_2", arguments: '{"y": 12}', complete: true },
      ],
    });
    const deltas: ToolCallDelta[] = [];
    const texts: string[] = [];
    const tracker = new ToolAnswerTracker(
      SECTIONED,
      true,
      (t) => texts.push(t),
      (d) => deltas.push(d),
    );
    for (const c of output) tracker.push(c);
    const result = tracker.finish();
    assert.deepEqual(texts, []);
    assert.deepEqual(
      result.toolCalls.map((c) => [c.name, c.arguments]),
      [
        ["a", '{"x": "1"}'],
        ["b_2", '{"y": 12}'],
      ],
    );
    assert.deepEqual(
      deltas.filter((d) => d.id !== undefined).map((d) => [d.index, d.name, d.arguments]),
      [
        [0, "a", ""],
        [1, "b_2", ""],
      ],
    );
    for (const [i, call] of result.toolCalls.entries()) {
      assert.equal(
        deltas
          .filter((d) => d.index === i)
          .map((d) => d.arguments)
          .join(""),
        call.arguments,
      );
      assert.equal(deltas.find((d) => d.index === i && d.id !== undefined)!.id, call.id);
    }
  });

  it("ends a suffix at its end-of-generation token, which the model writes itself (no grammar can spell it)", () => {
    const mistral = callSyntaxOf(new MistralChatWrapper());
    assert.equal(mistral.parallel?.sectionSuffix, "]", "the builtin EOS token is not the text 'EOS'");
    assert.equal(mistral.parallel?.sectionPrefix, "[TOOL_CALLS][", "a special token that does not end generation is kept");
    // As a Qwen, Llama 3.1 or Functionary model reads these texts: each of these tokens ends generation.
    const endOf = (text: string): number => {
      const ends = ["<|im_end|>", "<|eom_id|>", "<|eot_id|>"].map((eog) => text.indexOf(eog)).filter((at) => at !== -1);
      return ends.length === 0 ? -1 : Math.min(...ends);
    };
    assert.equal(callSyntaxOf(new QwenChatWrapper(), endOf).parallel?.sectionSuffix, "");
    assert.equal(callSyntaxOf(new QwenChatWrapper(), endOf).suffix, "}\n</tool_call>", "a suffix without one is whole");
    assert.equal(callSyntaxOf(new Llama3_1ChatWrapper(), endOf).suffix, "</function>");
    assert.equal(callSyntaxOf(new FunctionaryChatWrapper(), endOf).parallel?.sectionSuffix, "");
    // A model without such a token writes the text.
    assert.equal(callSyntaxOf(new QwenChatWrapper()).parallel?.sectionSuffix, "<|im_end|>\n");
  });

  it("keeps the format's section around a call with parallel calls off, holding one call", async () => {
    const grammars = new GrammarCache(llama);
    const rules = new Map(REQUEST.tools.map((t) => [t.name, 'root ::= "{}"']));
    for (const choice of ["auto", "required"] as const) {
      const grammar = toolGrammar(SECTIONED, { ...REQUEST, choice, parallel: false }, rules);
      assert.match(grammar, /^calls ::= "\[" call "\]"$/m, choice);
      // Under "auto", text may not start like the section does.
      if (choice === "auto") assert.match(grammar, /^free ::= \[\^\\u005b\]/m);
      await grammars.fromText(grammar);
    }
    assert.deepEqual(parseAnswer("<call>a|{}</call a>", SECTIONED, false, true), { kind: "text", content: "<call>a|{}</call a>" });
    assert.deepEqual(parseAnswer("[<call>a|{}</call a>,<call>b_2|{}</call b_2>]", SECTIONED, false, true), {
      kind: "calls",
      calls: [{ name: "a", arguments: "{}", complete: true }],
    });
  });

  it("ends a text answer at a stop string, and never cuts a call at one", () => {
    const texts: string[] = [];
    const text = new ToolAnswerTracker(SECTIONED, true, (t) => texts.push(t), undefined, new StopScanner(["|", "END"]));
    for (const c of "Hello, EN then END and more") text.push(c);
    assert.equal(text.stopped, true);
    assert.deepEqual(text.finish(), { content: "Hello, EN then ", toolCalls: [] });
    assert.equal(texts.join(""), "Hello, EN then ");

    const call = new ToolAnswerTracker(SECTIONED, false, undefined, undefined, new StopScanner(["|", '"', "call"]));
    for (const c of '[<call>a|{"x": "1"}</call a>]') call.push(c);
    assert.equal(call.stopped, false);
    assert.deepEqual(
      call.finish().toolCalls.map((c) => [c.name, c.arguments]),
      [["a", '{"x": "1"}']],
    );
  });

  it("tells text from a call as soon as the first characters differ, and keeps a cut call's arguments", () => {
    assert.deepEqual(parseAnswer("[<ca", SECTIONED, true, false), { kind: "undecided" });
    assert.deepEqual(parseAnswer("Hello", SECTIONED, true, false), { kind: "text", content: "Hello" });
    assert.deepEqual(parseAnswer("[<call>a|{}</call a>]", SECTIONED, false, true), {
      kind: "calls",
      calls: [{ name: "a", arguments: "{}", complete: true }],
    });
    assert.deepEqual(parseAnswer('[<call>a|{"x": "', SECTIONED, true, true), {
      kind: "calls",
      calls: [{ name: "a", arguments: '{"x": "', complete: false }],
    });
    assert.deepEqual(parseAnswer('[<call>a|{"x": "}"}', SECTIONED, true, true), {
      kind: "calls",
      calls: [{ name: "a", arguments: '{"x": "}"}', complete: true }],
    });
  });
});

describe("tools as the prompt documents them", () => {
  it("follow references as the grammar does and keep the hints it does not hold, such as a format", () => {
    const request: ToolRequest = {
      tools: [
        {
          name: "notify",
          description: undefined,
          parameters: {
            type: "object",
            properties: {
              to: { type: "string", format: "email" },
              level: { $ref: "#/definitions/Level" },
              cc: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
              tags: { type: ["array", "null"], items: { type: "string" } },
            },
            required: ["to", "level"],
            definitions: { Level: { enum: ["low", "high"] } },
          },
        },
      ],
      choice: "auto",
      parallel: true,
    };
    const params = toolFunctions(request.tools).notify!.params as { properties: Record<string, Record<string, unknown>>; $defs: object };
    // The model is told what the grammar cannot hold: documented from the grammar's own schema it lost the format.
    assert.equal(params.properties.to!.format, "email");
    assert.equal(params.properties.level!.$ref, "#/$defs/Level");
    assert.deepEqual(params.$defs, { Level: { enum: ["low", "high"] } });
    // As alternatives node-llama-cpp's documentation reads: it drops an anyOf (pydantic's Optional) and reads a list of types as null.
    assert.deepEqual(params.properties.cc!.oneOf, [{ type: "string" }, { type: "null" }]);
    assert.deepEqual(params.properties.tags!.oneOf, [{ type: "array", items: { type: "string" } }, { type: "null" }]);
  });
});
