import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getLlama, type Llama } from "node-llama-cpp";
import { grammarProblem } from "../src/engines/embedded/grammar-limits.js";
import { cliKey, postJson, spawnServe, tempDir, tinyModel } from "./helpers/fixtures.js";
import {
  calendarDates,
  endAtRootValue,
  GrammarCache,
  grammarSchemaOf,
  labelGrammar,
  schemaGbnf,
  strictNumbers,
} from "../src/engines/embedded/grammars.js";

/** Whether llama.cpp's parser takes the text (a rejected one is printed to this process's stderr: the test's own noise). */
async function llamaParses(llama: Llama, gbnf: string): Promise<boolean> {
  try {
    await llama.createGrammar({ grammar: gbnf });
    return true;
  } catch {
    return false;
  }
}

const object = { type: "object", properties: { a: { type: "integer" } } };
const string = (bounds: object) => ({ type: "string", ...bounds });

/** Schemas and whether llama.cpp takes the grammar node-llama-cpp writes for them. */
const SCHEMAS: Array<[string, object, boolean]> = [
  // A string's character is 2 rules (the group and string-char-rule, first named there): 2 × 1000 reaches 2000.
  ["maxLength 999", string({ maxLength: 999 }), true],
  ["maxLength 1000", string({ maxLength: 1000 }), false],
  ["minLength 999", string({ minLength: 999 }), true],
  ["minLength 1000", string({ minLength: 1000 }), false],
  ["minLength = maxLength 1000", string({ minLength: 1000, maxLength: 1000 }), false],
  ["maxLength 1999", string({ maxLength: 1999 }), false],
  // Once string-char-rule was named before (a plain string first), the character is 1 rule: 1999 passes.
  ["maxLength 1999 after a plain string", { type: "object", properties: { s: { type: "string" }, t: string({ maxLength: 1999 }) } }, true],
  // In a property the character's rule is defined (named) before the string's rule that repeats it.
  ["maxLength 1999 on a property", { type: "object", properties: { t: string({ maxLength: 1999 }) } }, true],
  ["maxItems 1000 of objects", { type: "array", items: object, maxItems: 1000 }, true],
  ["maxItems 1001 of objects", { type: "array", items: object, maxItems: 1001 }, false],
  ["minItems 1001 of objects", { type: "array", items: object, minItems: 1001 }, false],
  [
    "maxItems 668 after prefixItems (comma and item first named there: 3 rules)",
    { type: "array", prefixItems: [{ type: "string" }], items: { type: "boolean" }, maxItems: 668 },
    false,
  ],
  ["maxItems 667 after prefixItems", { type: "array", prefixItems: [{ type: "string" }], items: { type: "boolean" }, maxItems: 667 }, true],
  [
    "nested: 1000 lists of short strings",
    { type: "array", items: { type: "array", items: string({ maxLength: 3 }), maxItems: 5 }, maxItems: 1000 },
    true,
  ],
  [
    "nested: 1001 lists of short strings",
    { type: "array", items: { type: "array", items: string({ maxLength: 3 }), maxItems: 5 }, maxItems: 1001 },
    false,
  ],
  // In a property the items and commas are named before the list, so the repeated piece is 1 rule; but the group
  // around it (the list may be empty) holds its own rule, the inner group's and the 1998 optional ones: 2000.
  ["nested: a property of 1998 objects", { type: "object", properties: { rows: { type: "array", items: object, maxItems: 1998 } } }, true],
  ["nested: a property of 1999 objects", { type: "object", properties: { rows: { type: "array", items: object, maxItems: 1999 } } }, false],
  [
    "extra properties, maxProperties 667",
    { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" }, maxProperties: 667 },
    true,
  ],
  [
    "extra properties, maxProperties 668",
    { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" }, maxProperties: 668 },
    false,
  ],
];

/** Grammars no schema writes today, for the parts of the rule the schemas above do not reach. */
const TEXTS: Array<[string, boolean]> = [
  ['root ::= "a"{0,1999}', true],
  ['root ::= "a"{0,2000}', false],
  // Over 2000 the maximum is dropped (no bound), so only the minimum counts.
  ['root ::= "a"{0,2001}', true],
  ['root ::= "a"{2001}', false],
  // Repetitions of a repetition multiply.
  ['root ::= "a"{2}{999}', true],
  ['root ::= "a"{2}{1000}', false],
  // A group counts the rules made inside it: itself, x, the inner group and its 1997 optional ones are 2000,
  // so it cannot even be optional.
  ['root ::= ( x ( "," x ){0,1996} )?\nx ::= "b"', true],
  ['root ::= ( x ( "," x ){0,1997} )?\nx ::= "b"', false],
  // A name counts where it is first seen, defined or referred to.
  ['root ::= ("a" x){999}\nx ::= "b"', true],
  ['root ::= ("a" x){1000}\nx ::= "b"', false],
  ['x ::= "b"\nroot ::= ("a" x){1000}', true],
  ['root ::= "a" # a comment ( "b" ){5000}\n', true],
  ['root ::= ( "a" |\n  "b" ){999}', true],
  ['root ::= "\\q"', false],
  ['root ::= ""*', false],
  ["root ::= y", false],
  // An undefined name fails only where a rule still refers to it (x{0} drops the reference) or its id is below a defined one.
  ["root ::= x{0}", true],
  ["root ::= x?", false],
  ['root ::= "a" x{0} y\ny ::= "b"', false],
  ['root ::= "a\0b"', false],
];

describe("llama.cpp's grammar limits, found before llama.cpp parses", () => {
  it("agree with llama.cpp's parser on the grammars written for schemas", async () => {
    const llama = await getLlama({ gpu: false });
    for (const [name, schema, parses] of SCHEMAS) {
      const gbnf = await schemaGbnf(schema);
      assert.equal(await llamaParses(llama, gbnf), parses, `llama.cpp on ${name}`);
      assert.equal(grammarProblem(gbnf) === undefined, parses, `our check on ${name}: ${JSON.stringify(grammarProblem(gbnf))}`);
    }
  });

  it("agree with llama.cpp's parser on the rest of the rule: maxima over 2000, chains, groups, first names, comments", async () => {
    const llama = await getLlama({ gpu: false });
    for (const [gbnf, parses] of TEXTS) {
      assert.equal(await llamaParses(llama, gbnf), parses, `llama.cpp on ${JSON.stringify(gbnf)}`);
      assert.equal(grammarProblem(gbnf) === undefined, parses, `our check on ${JSON.stringify(gbnf)}: ${JSON.stringify(grammarProblem(gbnf))}`);
    }
  });

  it("read the grammar node-llama-cpp would hand llama.cpp: the same text createGrammarForJsonSchema writes", async () => {
    const llama = await getLlama({ gpu: false });
    const schema = {
      type: "object",
      properties: { d: { type: "string", format: "date" }, n: { type: "number" }, l: { type: "array", items: string({ maxLength: 4 }) } },
    };
    const written = (await llama.createGrammarForJsonSchema(grammarSchemaOf(schema) as never)).grammar;
    assert.equal(await schemaGbnf(schema), endAtRootValue(calendarDates(strictNumbers(written))));
  });

  it("refuse a schema past the limit with a 400 naming the keyword, and the value it names is taken", async () => {
    const grammars = new GrammarCache(await getLlama({ gpu: false }));
    const refusal = async (schema: object): Promise<string> => {
      const error = await grammars.jsonSchemaGbnf(schema as Record<string, unknown>, "p").then(
        () => assert.fail(`${JSON.stringify(schema)} was not refused`),
        (e: unknown) => e as { status: number; message: string },
      );
      assert.equal(error.status, 400);
      return error.message;
    };
    const cases: Array<[object, RegExp, (at: number) => object]> = [
      [
        string({ maxLength: 1000 }),
        /schema\.maxLength is 1000: .* 2 rules 1000 times.* under 2000: maxLength at most (\d+) here/,
        (n) => string({ maxLength: n }),
      ],
      [string({ minLength: 1500 }), /schema\.minLength is 1500: .* minLength at most (\d+) here/, (n) => string({ minLength: n })],
      [
        { type: "array", items: object, maxItems: 1001 },
        /schema\.maxItems is 1001: .* maxItems at most (\d+) here/,
        (n) => ({ type: "array", items: object, maxItems: n }),
      ],
      [
        { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" }, maxProperties: 1500 },
        /schema\.maxProperties is 1500: .* maxProperties at most (\d+) here/,
        (n) => ({ type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" }, maxProperties: n }),
      ],
    ];
    for (const [schema, pattern, lowered] of cases) {
      const message = await refusal(schema);
      const at = pattern.exec(message);
      assert.ok(at !== null, message);
      await grammars.jsonSchemaGbnf(lowered(Number(at[1])) as Record<string, unknown>, "p");
      await refusal(lowered(Number(at[1]) + 1));
    }
    assert.match(
      await refusal({ type: "object", properties: { a: { const: "x\0y" } } }),
      /schema\.properties\.a\.const holds the character U\+0000, which llama\.cpp's grammars cannot hold/,
    );
    assert.match(
      await refusal({ type: "object", properties: { "a\0": { type: "string" } } }),
      /a name in schema\.properties holds the character U\+0000/,
    );
    assert.match(await refusal({ type: "string", enum: ["x", "y\0"] }), /schema\.enum holds the character U\+0000/);
  });
});

describe("label grammars", () => {
  it("write every character llama.cpp's parser can read, control characters JSON writes as \\b and \\f included", async () => {
    const llama = await getLlama({ gpu: false });
    const labels = ["back\bspace", "form\ffeed", 'quote " and \\ back', "tab\tnew\nline\u0001", "ünï 🐝"];
    const gbnf = labelGrammar(labels);
    assert.equal(grammarProblem(gbnf), undefined);
    assert.ok(await llamaParses(llama, gbnf), gbnf);
    assert.match(gbnf, /"back\\x08space"/);
  });
});

describe("property bounds over 1999", () => {
  it("are refused where extra properties may be written (llama.cpp would drop such a maximum), and free on a closed object", async () => {
    const grammars = new GrammarCache(await getLlama({ gpu: false }));
    const open = { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" } };
    // The extra properties' repetition would be {0,4998}: over 2000, llama.cpp reads it as no bound, so 5000 were not held.
    await assert.rejects(
      grammars.jsonSchemaGbnf({ ...open, maxProperties: 5000 }, "p"),
      /schema\.maxProperties is 5000; the grammar holds bounds up to 1999/,
    );
    await assert.rejects(
      grammars.jsonSchemaGbnf({ ...open, minProperties: 2500 }, "p"),
      /schema\.minProperties is 2500; the grammar holds bounds up to 1999/,
    );
    // A closed object writes only its listed properties: the bound repeats nothing.
    await grammars.jsonSchemaGbnf({ type: "object", properties: { a: { type: "string" } }, maxProperties: 5000 }, "p");
  });
});

describe("a schema past llama.cpp's grammar limits, sent to alveare serve", () => {
  it("is refused with a 400 and its values never reach the server's stderr", async () => {
    const dataDir = tempDir();
    const env = { ...process.env, ALVEARE_THREADS: "1", ALVEARE_LOG_LEVEL: "info", ALVEARE_DATA_DIR: dataDir, ALVEARE_CONFIG: "" };
    const { key } = cliKey(dataDir, "scale", env);
    const { child, url } = await spawnServe(["--model", await tinyModel()], env);
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    try {
      const tagged = { type: "object", properties: { tag: { const: "SECRET-XYZ" } }, required: ["tag"] };
      // llama.cpp's parser rejected each, printing the whole grammar (the const among it) to stderr.
      const schemas = [
        { type: "array", items: tagged, maxItems: 1001 },
        { type: "object", properties: { rows: { type: "array", items: tagged, maxItems: 1999 } }, required: ["rows"] },
        { type: "object", properties: { tag: { const: "SECRET-XYZ\0" } }, required: ["tag"] },
      ];
      for (const schema of schemas) {
        const r = await postJson(
          `${url}/v1/chat/completions`,
          {
            model: "alveare-extract",
            messages: [{ role: "user", content: "x" }],
            max_tokens: 4,
            response_format: { type: "json_schema", json_schema: { name: "s", schema } },
          },
          { authorization: `Bearer ${key}` },
        );
        assert.equal(r.status, 400, JSON.stringify(r.json));
        const error = r.json.error as { param: string; message: string };
        assert.equal(error.param, "response_format.json_schema.schema");
        assert.doesNotMatch(error.message, /Failed to parse grammar/);
      }
      // The same limit holds for a tool's parameters.
      const tool = await postJson(
        `${url}/v1/chat/completions`,
        {
          model: "alveare-extract",
          messages: [{ role: "user", content: "x" }],
          max_tokens: 4,
          tools: [{ type: "function", function: { name: "f", parameters: schemas[1] } }],
        },
        { authorization: `Bearer ${key}` },
      );
      assert.equal(tool.status, 400, JSON.stringify(tool.json));
      assert.equal((tool.json.error as { param: string }).param, "tools[0].function.parameters");
      // A request after them is answered: stderr has had time to receive anything written for them.
      const ok = await postJson(
        `${url}/v1/chat/completions`,
        { model: "alveare-extract", messages: [{ role: "user", content: "x" }], max_tokens: 2 },
        { authorization: `Bearer ${key}` },
      );
      assert.equal(ok.status, 200, JSON.stringify(ok.json));
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.on("exit", r));
    }
    assert.doesNotMatch(stderr, /SECRET-XYZ/);
    assert.doesNotMatch(stderr, /error parsing grammar/);
  });
});
