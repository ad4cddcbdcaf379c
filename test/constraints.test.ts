import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getLlama } from "node-llama-cpp";
import type { EmbeddedEngine } from "../src/engines/embedded/embedded-engine.js";
import { GrammarCache, grammarSchemaOf, JSON_OBJECT_GRAMMAR, schemaGbnf } from "../src/engines/embedded/grammars.js";
import { labelTokens } from "../src/engines/embedded/label-scores.js";
import { postJson, startTestServer, type TestServer } from "./helpers/fixtures.js";

describe("JSON schema grammars", () => {
  it("make one definition of a schema however many spellings of its pointer refer to it", () => {
    const spellings = ["#/properties/abc", "#/properties/a%62c", "#/properties/%61b%63", "#/properties/ab%63"];
    // Each spelling made a copy: 500 of them over a 15 KB property built 6 MB of schema on the event loop.
    const held = grammarSchemaOf({
      type: "array",
      properties: { abc: { type: "string" } },
      prefixItems: spellings.map(($ref) => ({ $ref })),
    }) as { $defs: object };
    assert.deepEqual(Object.keys(held.$defs), ["#/properties/abc"]);
  });

  it("keep a definition named like an Object.prototype member as a definition of its own", () => {
    // JSON.parse makes "__proto__" an own key; assigned into a plain object it set the table's prototype instead.
    const defs = JSON.parse('{"__proto__": {"type": "boolean"}, "constructor": {"type": "integer"}}') as object;
    const held = grammarSchemaOf({
      type: "object",
      properties: { a: { $ref: "#/$defs/__proto__" }, b: { $ref: "#/$defs/constructor" } },
      $defs: defs,
    }) as { $defs: object };
    assert.deepEqual(Object.keys(held.$defs), ["__proto__", "constructor"]);
    assert.deepEqual(Object.getOwnPropertyDescriptor(held.$defs, "__proto__")?.value, { type: "boolean" });
    assert.equal(Object.getPrototypeOf(held.$defs), Object.prototype);
  });

  it("give each type of a list only its own keywords, so a nest of type lists stays the size of the schema", () => {
    const types = ["object", "string", "number", "integer", "boolean", "null", "array"];
    let schema: object = { type: "string" };
    for (let level = 0; level < 8; level++) schema = { type: types, properties: { a: schema }, items: { type: "integer" }, minLength: 1 };
    // Every keyword went into every type's alternative, each converted again: 7^8 copies of the innermost
    // schema from 753 bytes (30 s on the event loop, the whole node stopped).
    const held = grammarSchemaOf(schema) as { oneOf: Array<Record<string, unknown>> };
    assert.ok(JSON.stringify(held).length < 4 * JSON.stringify(schema).length, `${JSON.stringify(held).length} characters`);
    const byType = Object.fromEntries(held.oneOf.map((alternative) => [alternative.type, Object.keys(alternative).sort()]));
    assert.deepEqual(byType.object, ["properties", "type"]);
    assert.deepEqual(byType.array, ["items", "type"]);
    assert.deepEqual(byType.string, ["minLength", "type"]);
    assert.deepEqual(byType.null, ["type"]);
  });

  it("give an integer no exponent and a number at most a two-digit one, in every rule node-llama-cpp writes for them", async () => {
    const grammars = new GrammarCache(await getLlama({ gpu: false }));
    const gbnf = await grammars.jsonSchemaGbnf(
      { type: "object", properties: { n: { type: "integer" }, x: { type: "number" }, list: { type: "array", items: { type: "integer" } } } },
      "schema",
    );
    const rules = new Map(gbnf.split("\n").map((line) => line.split(" ::= ") as [string, string]));
    assert.equal(rules.get("integer-number-rule"), '"-"? ("0" | [1-9] [0-9]{0,15})');
    assert.equal(rules.get("fractional-number-rule"), '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?');
    assert.doesNotMatch(gbnf, /\{0,15\}\)\)\?/, "no sixteen-digit exponent left anywhere");
  });

  it("write every date (format date and date-time) as a calendar date, in every rule node-llama-cpp writes for them", async () => {
    const grammars = new GrammarCache(await getLlama({ gpu: false }));
    const gbnf = await grammars.jsonSchemaGbnf(
      { type: "object", properties: { d: { type: "string", format: "date" }, t: { type: "string", format: "date-time" } } },
      "schema",
    );
    assert.doesNotMatch(gbnf, /"3" \[01\]\)\s*("\\""|"T")/, "no day 30-31 left free of its month");
    assert.equal(gbnf.match(/"-02-29"/g)?.length, 2, "29 February only in a leap year, in both rules");
    await grammars.get({ type: "json_schema", schema: { type: "string", format: "date" } });
  });

  it("end with the root value: no whitespace may follow it, so generation stops there", async () => {
    const grammars = new GrammarCache(await getLlama({ gpu: false }));
    const gbnf = await grammars.jsonSchemaGbnf({ type: "object", properties: { a: { type: "integer" } } }, "schema");
    assert.match(gbnf, /^root ::= "\{" .* "\}"$/m);
    assert.doesNotMatch(gbnf, /\\n"? \[\\n\]\*/, "no trailing newlines after the root");
    // Also with line separators in a property's name, which the rule holds raw.
    for (const name of ["k\u2028", "k\u2029", "a\u2028b\u2029c"]) {
      const separated = await grammars.jsonSchemaGbnf({ type: "object", properties: { [name]: { type: "integer" } }, required: [name] }, "schema");
      assert.doesNotMatch(separated, /\\n"? \[\\n\]\*/, `no trailing newlines after the root (${JSON.stringify(name)})`);
    }
    assert.match(JSON_OBJECT_GRAMMAR, /^root +::= "\{" .* "\}"$/m, "json_object's root ends at its closing brace");
    await grammars.get({ type: "json_object" });
  });
});

/** At temperature 2.0 a random-weight model samples nearly uniformly: only the grammar keeps the output in shape. */
describe("output constraints hold at temperature 2.0", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      specialists: {
        triage: { description: "ticket triage", output: { type: "labels", labels: ["bug", "feature request", "question"] } },
      },
    });
  });
  after(async () => {
    await server.close();
  });

  /** One answer of the extract specialist held to `schema`, sampled at temperature 2. */
  const sampleSchema = async (schema: object, content: string, seed: number): Promise<{ finish_reason: string; message: { content: string } }> => {
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-extract",
      messages: [{ role: "user", content }],
      temperature: 2,
      seed,
      max_tokens: 200,
      response_format: { type: "json_schema", json_schema: { name: "answer", schema } },
    });
    return (r.json.choices as Array<{ finish_reason: string; message: { content: string } }>)[0]!;
  };

  it("classify answers one of its labels, every time", async () => {
    for (let seed = 1; seed <= 25; seed++) {
      const r = await postJson(`${server.url}/v1/infer`, { specialist: "classify", prompt: `sample ${seed}`, temperature: 2, seed });
      assert.ok(["positive", "negative", "neutral"].includes(r.json.result as string), `seed ${seed}: ${String(r.json.result)}`);
    }
  });

  it("a configured label set (with spaces in a label) holds too, drawn as the scores say", async () => {
    const seen = new Set<string>();
    let scores: Record<string, number> = {};
    for (let seed = 1; seed <= 30; seed++) {
      const r = await postJson(`${server.url}/v1/infer`, { specialist: "triage", prompt: "it crashes", temperature: 2, seed });
      assert.ok(["bug", "feature request", "question"].includes(r.json.result as string), String(r.json.result));
      seen.add(r.json.result as string);
      scores = r.json.scores as Record<string, number>;
    }
    // At temperature 2 a score p weighs sqrt(p): no label the tempered scores make near-impossible is ever drawn,
    // and when the others hold a third of the tempered weight, 30 draws see more than one label.
    const weights = Object.fromEntries(Object.entries(scores).map(([label, p]) => [label, Math.sqrt(p)]));
    const total = Object.values(weights).reduce((sum, w) => sum + w, 0);
    for (const label of seen) assert.ok(weights[label]! / total > 1e-4, `${label} drawn at ${weights[label]! / total}`);
    const best = Math.max(...Object.values(weights)) / total;
    if (best < 2 / 3) assert.ok(seen.size > 1, `30 draws saw only ${[...seen].join()} though the best label weighs ${best}`);
  });

  it("a JSON schema is met by every sample", async () => {
    const schema = {
      type: "object",
      properties: {
        sentiment: { enum: ["positive", "negative"] },
        urgent: { type: "boolean" },
        tags: { type: "array", items: { enum: ["billing", "login", "other"] }, maxItems: 3 },
      },
      required: ["sentiment", "urgent", "tags"],
      additionalProperties: false,
    };
    for (let seed = 1; seed <= 15; seed++) {
      const choice = await sampleSchema(schema, "Login broken, furious!", seed);
      assert.equal(choice.finish_reason, "stop", choice.message.content);
      const value = JSON.parse(choice.message.content) as { sentiment: string; urgent: boolean; tags: string[] };
      assert.deepEqual(Object.keys(value).sort(), ["sentiment", "tags", "urgent"]);
      assert.ok(["positive", "negative"].includes(value.sentiment));
      assert.equal(typeof value.urgent, "boolean");
      assert.ok(value.tags.length <= 3 && value.tags.every((t) => ["billing", "login", "other"].includes(t)));
    }
  });

  it("integers are integers and numbers finite: no exponent on an integer, none a double cannot hold", async () => {
    const schema = {
      type: "object",
      properties: { count: { type: "integer" }, ids: { type: "array", items: { type: "integer" }, maxItems: 4 }, price: { type: "number" } },
      required: ["count", "ids", "price"],
      additionalProperties: false,
    };
    for (let seed = 1; seed <= 15; seed++) {
      const { content } = (await sampleSchema(schema, "Three items at 4.50", seed)).message;
      const value = JSON.parse(content) as { count: number; ids: number[]; price: number };
      for (const n of [value.count, ...value.ids]) assert.ok(Number.isInteger(n), `seed ${seed}: ${content}`);
      assert.ok(Number.isFinite(value.price), `seed ${seed}: ${content}`);
    }
  });

  it("extract's JSON object constraint yields a JSON object whenever the output ends", async () => {
    let ended = 0;
    for (let seed = 1; seed <= 15; seed++) {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-extract",
        messages: [{ role: "user", content: "Bob is 42" }],
        temperature: 2,
        seed,
        max_tokens: 400,
      });
      const choice = (r.json.choices as Array<{ finish_reason: string; message: { content: string } }>)[0]!;
      assert.ok(choice.message.content.trimStart().startsWith("{"), choice.message.content);
      if (choice.finish_reason === "stop") {
        ended++;
        assert.equal(choice.message.content, choice.message.content.trimEnd(), "nothing after the closing brace");
        const value: unknown = JSON.parse(choice.message.content);
        assert.ok(typeof value === "object" && value !== null && !Array.isArray(value));
      }
    }
    assert.ok(ended > 0, "some samples end within max_tokens");
  });

  it("json_schema answers end at the value: no trailing newlines to pay for", async () => {
    const schema = { type: "object", properties: { a: { type: "integer" }, ok: { type: "boolean" } }, required: ["a", "ok"] };
    for (let seed = 1; seed <= 6; seed++) {
      const choice = await sampleSchema(schema, "Bob is 42", seed);
      assert.equal(choice.finish_reason, "stop", choice.message.content);
      assert.equal(choice.message.content, choice.message.content.trimEnd(), `seed ${seed}: ${JSON.stringify(choice.message.content)}`);
      JSON.parse(choice.message.content);
    }
  });

  it("a JSON answer whose closing token comes as max_tokens runs out is whole: finish_reason stop, streamed or not", async () => {
    // Before, it said "length", which clients take for a cut answer to retry or throw away.
    const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };
    const ask = (maxTokens: number, stream = false) => ({
      model: "alveare-extract",
      messages: [{ role: "user", content: "Bob is 42" }],
      temperature: 2,
      seed: 3,
      max_tokens: maxTokens,
      stream,
      response_format: { type: "json_schema", json_schema: { name: "answer", schema } },
    });
    type Choice = { finish_reason: string; message: { content: string } };
    const whole = await postJson(`${server.url}/v1/chat/completions`, ask(200));
    const tokens = (whole.json.usage as { completion_tokens: number }).completion_tokens;
    const content = (whole.json.choices as Choice[])[0]!.message.content;
    assert.ok(tokens >= 2, content);
    const exact = await postJson(`${server.url}/v1/chat/completions`, ask(tokens));
    assert.deepEqual((exact.json.choices as Choice[])[0], { ...(whole.json.choices as Choice[])[0], finish_reason: "stop" });
    const streamed = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(ask(tokens, true)),
    });
    assert.match(await streamed.text(), /"finish_reason":"stop"/);
    // One token fewer is cut: "length", and the text does not parse.
    const cut = (await postJson(`${server.url}/v1/chat/completions`, ask(tokens - 1))).json.choices as Choice[];
    assert.equal(cut[0]!.finish_reason, "length");
    assert.throws(() => JSON.parse(cut[0]!.message.content));
  });

  it("dates and date-times are calendar dates: no 31st in a 30-day month, no 29 February outside a leap year", async () => {
    const names = ["a", "b", "c", "d", "e", "f"];
    const properties = Object.fromEntries(names.map((name, i) => [name, { type: "string", format: i % 3 === 2 ? "date-time" : "date" }]));
    const schema = { type: "object", properties, required: names, additionalProperties: false };
    const calendarDate = (date: string): boolean => new Date(`${date}T00:00:00Z`).toISOString().slice(0, 10) === date;
    const months = new Set<string>();
    for (let seed = 1; seed <= 12; seed++) {
      const { content } = (await sampleSchema(schema, "When?", seed)).message;
      for (const value of Object.values(JSON.parse(content) as Record<string, string>)) {
        const date = value.slice(0, 10);
        assert.ok(calendarDate(date), `seed ${seed}: ${date} is not a calendar date (${content})`);
        months.add(date.slice(5, 7));
      }
    }
    assert.ok(months.size > 3, `dates stay free within the calendar: months ${[...months].join(", ")}`);
  });

  it("holds anyOf, lists of types (objects and arrays among them) and leaves a format it does not hold free", async () => {
    const schema = {
      type: "object",
      properties: {
        a: { anyOf: [{ type: "string", maxLength: 3 }, { type: "null" }] },
        b: { type: ["integer", "null"] },
        c: { type: ["object", "null"], properties: { x: { type: "boolean" } }, required: ["x"] },
        d: { type: ["array", "string"], items: { type: "integer" }, maxItems: 2, maxLength: 4 },
        e: { type: "string", format: "email", maxLength: 6 },
        // The type beside the alternatives holds in each (node-llama-cpp alone would answer null for the first).
        f: { type: "string", oneOf: [{ maxLength: 2 }, { const: "long" }] },
      },
      required: ["a", "b", "c", "d", "e", "f"],
    };
    const emails = new Set<string>();
    // Lengths in characters (code points), as JSON Schema counts them.
    const chars = (text: string): number => [...text].length;
    for (let seed = 1; seed <= 8; seed++) {
      const { content } = (await sampleSchema(schema, "Bob is 42", seed)).message;
      const v = JSON.parse(content) as Record<string, unknown>;
      assert.ok(v.a === null || (typeof v.a === "string" && chars(v.a) <= 3), content);
      assert.ok(v.b === null || Number.isInteger(v.b), content);
      assert.ok(v.c === null || (typeof v.c === "object" && typeof (v.c as { x: unknown }).x === "boolean"), content);
      const d = v.d;
      assert.ok((typeof d === "string" && chars(d) <= 4) || (Array.isArray(d) && d.length <= 2 && d.every(Number.isInteger)), content);
      assert.equal(typeof v.e, "string", content);
      emails.add(v.e as string);
      assert.ok(v.f === "long" || (typeof v.f === "string" && chars(v.f) <= 2), content);
    }
    assert.ok(emails.size > 1, "a format the grammar does not hold leaves the string free, not forced empty");
  });

  it("refuses keywords the grammar would drop, naming where they are", async () => {
    const refused = async (schema: object): Promise<string> => {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-extract",
        messages: [{ role: "user", content: "x" }],
        response_format: { type: "json_schema", json_schema: { name: "s", strict: true, schema } },
      });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      const error = r.json.error as { code: string; param: string; message: string };
      assert.equal(error.code, "invalid_parameter");
      assert.equal(error.param, "response_format.json_schema.schema");
      return error.message;
    };
    const object = (a: object) => ({ type: "object", properties: { a }, required: ["a"] });
    assert.match(await refused(object({ allOf: [{ type: "string" }, { maxLength: 3 }] })), /'allOf' at schema\.properties\.a is not held/);
    assert.match(await refused(object({ type: "string", not: { const: "x" } })), /'not' at schema\.properties\.a/);
    assert.match(await refused({ type: "object", if: { required: ["a"] }, then: {} }), /'if' at schema /);
    assert.match(await refused({ type: "object", dependentSchemas: { a: {} } }), /'dependentSchemas' at schema /);
    assert.match(await refused({ type: "object", patternProperties: { "^x": { type: "string" } } }), /'patternProperties'/);
    assert.match(await refused(object({ type: "array", contains: { const: 1 } })), /'contains'/);
    assert.match(
      await refused(object({ type: "array", items: [{ type: "string" }] })),
      /schema\.properties\.a\.items is a list; write the tuple as 'prefixItems'/,
    );
    assert.match(await refused({ type: "object", properties: { a: { type: "string" } }, required: ["b"] }), /'required' names "b"/);
    assert.match(
      await refused({ type: "object", properties: { a: { type: "string" }, b: { type: "string" } }, maxProperties: 1 }),
      /maxProperties \(1\)/,
    );
    assert.match(await refused({ type: "object", properties: { a: {} }, anyOf: [{ required: ["a"] }] }), /'properties' beside 'anyOf'/);
    assert.match(await refused(object(false as unknown as object)), /schema\.properties\.a is false/);
    // A schema with nothing to hold it to would be answered null, whatever the caller meant.
    assert.match(await refused(object({})), /schema\.properties\.a has no 'type'/);
    assert.match(await refused(object({ description: "anything" })), /schema\.properties\.a has no 'type'/);
    assert.match(await refused(object(true as unknown as object)), /schema\.properties\.a is true/);
    // Past llama.cpp's grammar bound: refused before llama.cpp prints the grammar (and the schema's values) to stderr.
    const before = server.logs.records().length;
    assert.match(
      await refused({
        type: "object",
        properties: { x: { type: "string", enum: ["secret-value"] }, s: { type: "string", minLength: 2000 } },
        required: ["s"],
      }),
      /schema\.properties\.s\.minLength is 2000; the grammar holds bounds up to 1999/,
    );
    assert.match(await refused(object({ type: "array", items: { type: "integer" }, maxItems: 5000 })), /maxItems is 5000/);
    // Under 2000 but past llama.cpp's real limit (the piece's rules times the count): refused naming the bound, not "Failed to parse grammar".
    assert.match(await refused({ type: "string", maxLength: 1000 }), /schema\.maxLength is 1000: .*under 2000: maxLength at most 999 here/);
    assert.match(
      await refused({ type: "array", items: object({ type: "integer" }), maxItems: 1001 }),
      /schema\.maxItems is 1001: .*maxItems at most 1000 here/,
    );
    // A U+0000 would end the grammar's text there (it is handed over as a C string).
    assert.match(await refused(object({ const: "x\0y" })), /schema\.properties\.a\.const holds the character U\+0000/);
    assert.deepEqual(
      server.logs
        .records()
        .slice(before)
        .filter((r) => r.level === 50),
      [],
      "no error line for a caller's schema",
    );
    assert.match(
      await refused({ ...object({ type: "string", $ref: "#/$defs/s" }), $defs: { s: { type: "string", maxLength: 2 } } }),
      /'type' beside '\$ref'/,
    );
  });

  it("holds references by JSON pointer: escaped names, draft 7's definitions, a recursive definition", async () => {
    const cases: Array<[object, (v: unknown) => boolean]> = [
      [{ $ref: "#/$defs/a~1b", $defs: { "a/b": { type: "integer" } } }, Number.isInteger],
      [{ $ref: "#/$defs/a%20b", $defs: { "a b": { type: "boolean" } } }, (v) => typeof v === "boolean"],
      [
        {
          type: "object",
          properties: { k: { $ref: "#/definitions/K" } },
          required: ["k"],
          additionalProperties: false,
          definitions: { K: { enum: ["x", "y"] } },
        },
        (v) => ["x", "y"].includes((v as { k: string }).k),
      ],
    ];
    const tree = {
      type: "object",
      properties: { v: { type: "integer" }, kids: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 } },
      required: ["v", "kids"],
      additionalProperties: false,
    };
    const isTree = (v: unknown): boolean => {
      const node = v as { v: unknown; kids: unknown[] };
      return Number.isInteger(node.v) && Array.isArray(node.kids) && node.kids.length <= 2 && node.kids.every(isTree);
    };
    cases.push([{ $ref: "#/$defs/node", $defs: { node: tree } }, isTree]);
    // A definition named "__proto__" was lost (the answer was any JSON, null among them).
    cases.push([
      {
        type: "object",
        properties: { a: { $ref: "#/$defs/__proto__" } },
        required: ["a"],
        additionalProperties: false,
        $defs: JSON.parse('{"__proto__": {"type": "boolean"}}') as object,
      },
      (v) => typeof (v as { a: unknown }).a === "boolean",
    ]);
    for (const [schema, holds] of cases) {
      // Before, node-llama-cpp read each of these references as any JSON (it looks names up as written).
      for (let seed = 1; seed <= 4; seed++) {
        const choice = await sampleSchema(schema, "x", seed);
        if (choice.finish_reason !== "stop") continue;
        assert.ok(holds(JSON.parse(choice.message.content)), `${JSON.stringify(schema)}: ${choice.message.content}`);
      }
    }
  });

  it("holds objects and lists in const and enum: the answer is one of those values", async () => {
    const constant = { a: 1, b: [true, null], c: {} };
    const choices: unknown[] = [{ x: 1 }, "y", [1, 2], []];
    for (let seed = 1; seed <= 6; seed++) {
      assert.deepEqual(JSON.parse((await sampleSchema({ const: constant }, "x", seed)).message.content), constant);
      const drawn: unknown = JSON.parse((await sampleSchema({ enum: choices }, "x", seed)).message.content);
      assert.ok(
        choices.some((c) => JSON.stringify(c) === JSON.stringify(drawn)),
        JSON.stringify(drawn),
      );
    }
  });

  it("a stop string never cuts a JSON or label answer, streamed or whole", async () => {
    const constant = { z: "a b" };
    const chat = (extra: Record<string, unknown>) =>
      postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-chat",
        messages: [{ role: "user", content: "x" }],
        max_tokens: 40,
        stop: ['"', " "],
        response_format: { type: "json_schema", json_schema: { name: "c", schema: { const: constant } } },
        ...extra,
      });
    const whole = await chat({});
    const choice = (whole.json.choices as Array<{ finish_reason: string; message: { content: string } }>)[0]!;
    assert.deepEqual([JSON.parse(choice.message.content), choice.finish_reason], [constant, "stop"]);
    const streamed = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "alveare-extract",
        messages: [{ role: "user", content: "x" }],
        max_tokens: 40,
        stop: "{",
        stream: true,
        response_format: { type: "json_schema", json_schema: { name: "c", schema: { const: constant } } },
      }),
    });
    const deltas = (await streamed.text())
      .split("\n\n")
      .filter((event) => event.startsWith("data: {"))
      .map((event) => (JSON.parse(event.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? "");
    assert.deepEqual(JSON.parse(deltas.join("")), constant);
    // A label answer likewise: "neutral" cut at its first "e" was "n", with finish_reason stop.
    for (let seed = 1; seed <= 4; seed++) {
      const label = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-classify",
        messages: [{ role: "user", content: "x" }],
        temperature: 2,
        seed,
        stop: ["e", "t", "i"],
      });
      const content = (label.json.choices as Array<{ message: { content: string } }>)[0]!.message.content;
      assert.ok(["positive", "negative", "neutral"].includes(content), content);
    }
  });

  it("holds a long enum written as a tree of shared beginnings: every answer is one of its values", async () => {
    // Prefixes of one another, shared beginnings, escapes, a character outside the BMP and a control character.
    const values = [
      ...Array.from({ length: 24 }, (_, i) => `${"shared beginning ".repeat(3)}${i}`),
      "ab",
      "abc",
      "abcd",
      'quote " and \\ backslash',
      "bee 🐝",
      "tab\there",
      "bell\u0007",
      7,
      null,
    ];
    const gbnf = await schemaGbnf({ enum: values });
    assert.match(gbnf, / "shared beginning shared beginning shared beginning " \( /, "one literal for the shared part");
    for (let seed = 1; seed <= 12; seed++) {
      const answer: unknown = JSON.parse((await sampleSchema({ enum: values }, "x", seed)).message.content);
      assert.ok(values.includes(answer as string), JSON.stringify(answer));
    }
  });

  it("writes control characters of const and enum strings and of property names escaped: the answer parses", async () => {
    const text = "a\u0001b\b\f\u001f\t\n";
    const schema = {
      type: "object",
      properties: { "k\u0002": { const: text }, e: { enum: ["\u0003", "\u0004x"] }, o: { const: { "\u0005": ["\u0006"] } } },
      required: ["k\u0002", "e", "o"],
      additionalProperties: false,
    };
    for (let seed = 1; seed <= 4; seed++) {
      const { content } = (await sampleSchema(schema, "x", seed)).message;
      const value = JSON.parse(content) as Record<string, unknown>;
      assert.deepEqual(Object.keys(value).sort(), ["e", "k\u0002", "o"]);
      assert.equal(value["k\u0002"], text);
      assert.ok(["\u0003", "\u0004x"].includes(value.e as string));
      assert.deepEqual(value.o, { "\u0005": ["\u0006"] });
    }
  });

  it("holds a reference to any schema of the document: OpenAI's recursive root ('#'), zod's reused property", async () => {
    const tree = {
      type: "object",
      properties: { name: { type: "string", maxLength: 5 }, children: { type: "array", items: { $ref: "#" }, maxItems: 2 } },
      required: ["name", "children"],
      additionalProperties: false,
    };
    const isTree = (v: unknown): boolean => {
      const node = v as { name: unknown; children: unknown[] };
      return typeof node.name === "string" && Array.isArray(node.children) && node.children.length <= 2 && node.children.every(isTree);
    };
    const address = { type: "object", properties: { city: { type: "boolean" } }, required: ["city"], additionalProperties: false };
    const reused = {
      type: "object",
      properties: { billing: address, shipping: { $ref: "#/properties/billing" } },
      required: ["billing", "shipping"],
    };
    for (let seed = 1; seed <= 4; seed++) {
      // Before, node-llama-cpp read both references as any JSON; then they were refused.
      const root = await sampleSchema(tree, "x", seed);
      if (root.finish_reason === "stop") assert.ok(isTree(JSON.parse(root.message.content)), root.message.content);
      const both = JSON.parse((await sampleSchema(reused, "x", seed)).message.content) as Record<string, { city: unknown }>;
      assert.equal(typeof both.shipping!.city, "boolean", JSON.stringify(both));
    }
  });

  it("refuses definitions llama.cpp cannot hold, naming them: a loop that writes nothing, one no answer of which ends", async () => {
    const refused = async (schema: object): Promise<string> => {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-extract",
        messages: [{ role: "user", content: "x" }],
        response_format: { type: "json_schema", json_schema: { name: "s", schema } },
      });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      return (r.json.error as { message: string }).message;
    };
    assert.match(
      await refused({ $ref: "#/$defs/a", $defs: { a: { oneOf: [{ $ref: "#/$defs/b" }, { type: "string" }] }, b: { $ref: "#/$defs/a" } } }),
      /refer back to themselves before writing anything \(a → b → a\)/,
    );
    // An optional self-reference: node-llama-cpp writes every listed property, so the answer never ended (ran to max_tokens).
    const linked = (next: object) => ({
      $ref: "#/$defs/N",
      $defs: { N: { type: "object", properties: { v: { type: "integer" }, next }, required: ["v"] } },
    });
    assert.match(await refused(linked({ $ref: "#/$defs/N" })), /no answer of the definition "N" ends/);
    // Judged as the grammar holds them: a type put into an alternative, extra properties minProperties forces.
    assert.match(
      await refused({
        type: "object",
        properties: { root: { $ref: "#/$defs/node" } },
        $defs: { node: { type: "object", anyOf: [{ properties: { child: { $ref: "#/$defs/node" } } }] } },
      }),
      /no answer of the definition "node" ends/,
    );
    assert.match(
      await refused({ type: "object", properties: {}, additionalProperties: { $ref: "#" }, minProperties: 1 }),
      /no answer of the definition "#" ends/,
    );
    const nullable = await sampleSchema(linked({ anyOf: [{ $ref: "#/$defs/N" }, { type: "null" }] }), "x", 1);
    assert.ok(nullable.finish_reason === "stop" || nullable.finish_reason === "length");
  });

  it("refuses a schema it cannot enforce with a 400 naming the parameter", async () => {
    const r = await postJson(`${server.url}/v1/chat/completions`, {
      model: "alveare-extract",
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_schema", json_schema: { name: "bad", schema: { type: "object", properties: { a: { type: "no-such-type" } } } } },
    });
    assert.equal(r.status, 400);
    assert.equal((r.json.error as { param: string }).param, "response_format.json_schema.schema");
  });
});

describe("labels at the end of the context", () => {
  it("are scored only when the longest fits after the prompt: a prompt leaving less room gets 400, never a shifted context", async () => {
    // Every specialist of the model at 512 tokens: the engine's context is the specialist's, with nothing beyond it.
    const contexts = Object.fromEntries(["classify", "summarise", "extract", "qa", "chat", "code"].map((id) => [id, { context_size: 512 }]));
    const labels = ["yes", "a label of many words that takes a dozen tokens or more"];
    const server = await startTestServer({
      specialists: { ...contexts, verdict: { description: "verdicts", system_prompt: "", context_size: 512, output: { type: "labels", labels } } },
    });
    try {
      const engine = server.registry.get("verdict")!.engine as EmbeddedEngine;
      assert.equal(engine.contextSize, 512);
      const longest = Math.max(...labels.map((label) => labelTokens(engine.model, label).length));
      const promptOf = (words: number): string => "ab ".repeat(words);
      const tokens = (words: number): number => engine.countPromptTokens([{ role: "user", content: promptOf(words) }]);
      let words = 1;
      // Scoring takes each label's tokens but its last after the prompt.
      while (tokens(words + 1) + longest - 1 <= 512) words++;
      // The longest prompt that leaves the longest label room is served, with every label scored after the whole prompt.
      const fits = await postJson(`${server.url}/v1/infer`, { specialist: "verdict", prompt: promptOf(words), temperature: 0 });
      assert.equal(fits.status, 200, JSON.stringify(fits.json));
      assert.equal(fits.json.tokens_used as number, tokens(words) + labelTokens(engine.model, fits.json.result as string).length);
      // One that fits the context but not its longest label after it is refused as too long, on both routes.
      assert.ok(tokens(words + 1) < 512, `${tokens(words + 1)} tokens`);
      const over = await postJson(`${server.url}/v1/infer`, { specialist: "verdict", prompt: promptOf(words + 1) });
      assert.equal(over.status, 400, JSON.stringify(over.json));
      assert.deepEqual([over.json.error], [{ ...(over.json.error as object), code: "context_length_exceeded", param: "prompt" }]);
      assert.match((over.json.error as { message: string }).message, new RegExp(`${longest} tokens`));
      const chat = await postJson(`${server.url}/v1/chat/completions`, {
        model: "alveare-verdict",
        messages: [{ role: "user", content: promptOf(words + 1) }],
      });
      assert.equal(chat.status, 400, JSON.stringify(chat.json));
      assert.equal((chat.json.error as { param: string }).param, "messages");
    } finally {
      await server.close();
    }
  });
});
