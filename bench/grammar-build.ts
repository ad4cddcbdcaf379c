import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { GrammarCache } from "../src/engines/embedded/grammars.js";
import { checkJsonSchemaLimits, JSON_SCHEMA_LIMITS as L } from "../src/server/json-schema-limits.js";

/**
 * How long the largest JSON schemas the API accepts take to compile to a
 * grammar (on the event loop). Each schema is checked against the limits first,
 * so every row is a schema a caller may send.
 */
const props = (n: number, sub: (i: number) => unknown): Record<string, unknown> => ({
  type: "object",
  properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, sub(i)])),
});
const nested = (depth: number, wrap: (inner: unknown) => unknown): unknown => {
  let schema: unknown = { type: "string" };
  for (let i = 1; i < depth; i++) schema = wrap(schema);
  return schema;
};
const accepted = (schema: unknown): boolean => {
  try {
    checkJsonSchemaLimits(schema, "schema");
    return true;
  } catch {
    return false;
  }
};
/** The largest schema of this shape that the limits still accept. */
const largest = (make: (n: number) => unknown): unknown => {
  let n = 1;
  while (accepted(make(n + 1))) n++;
  return make(n);
};

const schemas: Array<[string, unknown]> = [
  [`enum of ${L.maxEnumValues} values`, { enum: Array.from({ length: L.maxEnumValues }, (_, i) => `value-${i}`) }],
  [`${L.maxProperties} string properties`, props(L.maxProperties, () => ({ type: "string" }))],
  ["objects nested to the depth limit", largest((n) => nested(n, (inner) => ({ type: "object", properties: { a: inner }, required: ["a"] })))],
  [
    "nullable objects nested to the depth limit",
    largest((n) => nested(n, (inner) => ({ anyOf: [{ type: "object", properties: { a: inner }, required: ["a"] }, { type: "null" }] }))),
  ],
  ["arrays nested to the depth limit", largest((n) => nested(n, (inner) => ({ type: "array", items: inner, minItems: 1, maxItems: 3 })))],
  [
    "objects of 8 properties nested to the depth limit",
    largest((n) => nested(n, (inner) => props(8, (i) => (i === 0 ? inner : { type: "integer" })))),
  ],
  ["properties of enums, up to the limits", largest((n) => props(n, (i) => ({ enum: Array.from({ length: 32 }, (_, j) => `v${i}-${j}`) })))],
  ["two-level objects, up to the limits", largest((n) => props(n, () => props(16, () => ({ type: "integer" }))))],
  ["three-level objects, up to the limits", largest((n) => props(n, () => props(8, () => props(8, () => ({ type: "integer" })))))],
  ["long descriptions, up to the limits", largest((n) => props(n, () => ({ type: "string", description: "d".repeat(400) })))],
  [
    "anyOf unions, up to the limits",
    largest((n) => props(n, () => ({ anyOf: [{ type: "string" }, { type: "number" }, { type: "array", items: { type: "boolean" } }] }))),
  ],
];

const llama = await getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: LlamaLogLevel.error });
await new GrammarCache(llama).get({ type: "json_schema", schema: { type: "string" } }); // warm-up
process.stdout.write("| schema | JSON chars | grammar chars | build ms (best of 3) |\n|---|---|---|---|\n");
for (const [name, schema] of schemas) {
  checkJsonSchemaLimits(schema, "schema");
  let best = Infinity;
  let grammarChars = 0;
  for (let round = 0; round < 3; round++) {
    const cache = new GrammarCache(llama); // a fresh cache: every round builds
    const started = performance.now();
    const grammar = await cache.get({ type: "json_schema", schema: schema as Record<string, unknown> });
    best = Math.min(best, performance.now() - started);
    grammarChars = grammar?.grammar.length ?? 0;
  }
  process.stdout.write(`| ${name} | ${JSON.stringify(schema).length} | ${grammarChars} | ${best.toFixed(1)} |\n`);
}
process.exit(0);
