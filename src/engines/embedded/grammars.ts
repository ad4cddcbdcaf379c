import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { errors } from "../../errors.js";
import { quoteValue } from "../../schema/locate.js";
import type { OutputConstraint } from "../types.js";
import { allowedCount, describeGrammarProblem, grammarProblem, repetitionLimit, type GrammarProblem } from "./grammar-limits.js";
import { grammarBeginnings, MAX_GRAMMAR_BEGINNINGS } from "./grammar-ambiguity.js";
import { factorLiteralAlternatives, gbnfString } from "./literal-trie.js";
import { isSchemaObject, JSON_TYPES, mapSubschemas, pointerSegment, resolveSchemaRef, type SchemaObject } from "../../schema/json-schema-keywords.js";

type Schema = SchemaObject;

/**
 * Keywords that restrict an answer but that node-llama-cpp's grammar (pinned
 * 3.21.1, utils/gbnfJson) never reads: a schema with them is refused, never
 * served with answers that break them.
 */
const UNHELD_KEYWORDS = [
  "allOf",
  "not",
  "if",
  "then",
  "else",
  "dependentSchemas",
  "dependentRequired",
  "dependencies",
  "patternProperties",
  "propertyNames",
  "unevaluatedProperties",
  "unevaluatedItems",
  "contains",
  "minContains",
  "maxContains",
];

/** Keywords node-llama-cpp drops beside `oneOf` (and `$ref`): it reads only the alternatives (or the definition). */
const SHAPE_KEYWORDS = [
  "properties",
  "additionalProperties",
  "required",
  "minProperties",
  "maxProperties",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "enum",
  "const",
];

/**
 * The highest bound any schema may give: llama.cpp's grammar parser fails on a
 * repetition of 2000 and reads one over 2000 as no bound at all (a `maxLength`
 * of 5000 would silently not be held). It is only the ceiling: the parser
 * rejects a repetition once the rules of the piece repeated times its count
 * reaches 2000, and a string's character is 2 rules where the grammar first
 * names it, so `maxLength` 1000 can fail. That limit depends on the whole
 * grammar written; grammar-limits.ts finds it there, before llama.cpp would
 * (which prints the whole grammar, the schema's values included, to stderr).
 */
const MAX_GRAMMAR_REPEAT = 1999;
const REPEAT_BOUNDS = ["minLength", "maxLength", "minItems", "maxItems"];
/** Bounds on the number of properties repeat only the extra ones, so they count only where additionalProperties allows some. */
const PROPERTY_BOUNDS = ["minProperties", "maxProperties"];

/** The string formats node-llama-cpp holds; for any other it allows only "", so those are left to the caller (not held). */
const HELD_FORMATS = new Set(["date", "time", "date-time"]);

const isStructured = (value: unknown): boolean => typeof value === "object" && value !== null;

const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
/** The keywords that constrain only values of one type; every other keyword is kept for each type. */
const TYPE_KEYWORDS: Readonly<Record<string, readonly string[]>> = {
  object: ["properties", "required", "additionalProperties", "minProperties", "maxProperties"],
  array: ["items", "prefixItems", "minItems", "maxItems"],
  string: ["minLength", "maxLength", "format", "pattern"],
  number: NUMBER_KEYWORDS,
  integer: NUMBER_KEYWORDS,
};

/** A schema's keywords as they apply to values of `type`: those of other types left out. */
function keywordsOf(schema: Schema, type: string): Record<string, unknown> {
  const others = new Set(Object.entries(TYPE_KEYWORDS).flatMap(([t, keys]) => (t === type ? [] : keys)));
  for (const key of TYPE_KEYWORDS[type] ?? []) others.delete(key);
  return Object.fromEntries(Object.entries(schema).filter(([key]) => !others.has(key)));
}

/** The schema every answer of which is exactly `value`. */
function literalSchema(value: unknown): unknown {
  if (Array.isArray(value)) {
    if (value.length === 0) return { type: "array", maxItems: 0 };
    return { type: "array", prefixItems: value.map(literalSchema), minItems: value.length, maxItems: value.length };
  }
  if (isSchemaObject(value)) {
    const names = Object.keys(value);
    return {
      type: "object",
      properties: Object.fromEntries(names.map((name) => [name, literalSchema(value[name])])),
      required: names,
      additionalProperties: false,
    };
  }
  return { const: value };
}

/** The name a `$ref` to a definition of the root refers to ("#/$defs/a~1b" is "a/b"), or undefined for any other reference. */
function definitionName(ref: string): string | undefined {
  const match = /^#\/(?:\$defs|definitions)\/([^/]*)$/.exec(ref);
  return match === null ? undefined : pointerSegment(match[1]!);
}

/** Schemas other than definitions that pointers may reach: each becomes a definition, so their number is bounded. */
const MAX_POINTED = 64;

/**
 * The schema's references in the one form node-llama-cpp resolves: it looks up
 * the rest of "#/$defs/…" as written, unescaped, among `$defs`, and reads any
 * other reference as any JSON. So the root's `definitions` (draft 7, as
 * zod-to-json-schema writes them) join its `$defs`, each reference names its
 * definition as written, and a reference to any other schema in the document
 * (OpenAI's "#" for a recursive root, zod's "#/properties/billing" for one used
 * twice) makes that schema a definition of its own, named by its pointer.
 * Tables of definitions below the root are dropped: only pointers reach them.
 */
export function groundReferences(schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema;
  const defs = new Map<string, unknown>();
  for (const table of [schema.$defs, schema.definitions]) {
    if (!isSchemaObject(table)) continue;
    for (const [name, def] of Object.entries(table)) {
      if (defs.has(name) && JSON.stringify(defs.get(name)) !== JSON.stringify(def))
        throw new Error(`'$defs' and 'definitions' both define ${quoteValue(name)}, differently; keep one`);
      defs.set(name, def);
    }
  }
  /** The definition each schema other pointers reach became, by the schema itself: spellings of one pointer share it. */
  const pointed = new Map<unknown, string>();
  const definitionFor = (ref: string, path: string): string => {
    const name = definitionName(ref);
    if (name !== undefined && defs.has(name)) return name;
    const target = resolveSchemaRef(schema, ref)?.value;
    if (!isSchemaObject(target)) throw new Error(`'$ref' at ${path} is ${quoteValue(ref)}, which points to no schema the grammar can write`);
    let made = pointed.get(target);
    if (made === undefined) {
      if (pointed.size >= MAX_POINTED)
        throw new Error(`more than ${MAX_POINTED} schemas are referred to by pointer; refer to definitions in '$defs' instead`);
      made = ref;
      while (defs.has(made)) made = `${made}'`;
      pointed.set(target, made);
      defs.set(made, target);
    }
    return made;
  };
  const ground = (node: unknown, path: string): unknown => {
    if (!isSchemaObject(node)) return node;
    const { $defs: _nested, definitions: _older, ...own } = node;
    const out = mapSubschemas(own, path, ground);
    if (typeof node.$ref === "string") out.$ref = `#/$defs/${definitionFor(node.$ref, path)}`;
    return out;
  };
  const grounded = ground(schema, "schema") as Record<string, unknown>;
  // Grounding a definition may point at more of the document: each becomes a definition in turn.
  const table: Array<[string, unknown]> = [];
  for (let done = 0; done < defs.size;) {
    for (const [name, def] of [...defs].slice(done)) {
      table.push([name, ground(def, `schema.$defs.${name}`)]);
      done++;
    }
  }
  // Made as own entries: assigning a definition named "__proto__" would set the table's prototype instead, and
  // the grammar would read its references as any JSON.
  return defs.size === 0 ? grounded : { ...grounded, $defs: Object.fromEntries(table) };
}

const DEF_PREFIX = "#/$defs/";

/**
 * Whether some answer of `node` ends, when the definitions in `ends` can; read
 * on the schema as the grammar holds it (alternatives as `oneOf`).
 * node-llama-cpp writes every listed property.
 */
function canEnd(node: unknown, ends: ReadonlySet<string>): boolean {
  if (!isSchemaObject(node)) return true;
  if (typeof node.$ref === "string") return ends.has(node.$ref.slice(DEF_PREFIX.length));
  const alternatives = node.oneOf;
  if (Array.isArray(alternatives)) return alternatives.some((alternative) => canEnd(alternative, ends));
  if ("const" in node || "enum" in node) return true;
  const types: unknown[] = Array.isArray(node.type) ? node.type : [node.type];
  return types.some((type) => {
    if (type === "object") {
      const listed = Object.values(isSchemaObject(node.properties) ? node.properties : {});
      // Past the listed properties, `minProperties` forces extra ones, each of the `additionalProperties` schema.
      const extra = typeof node.minProperties === "number" && node.minProperties > listed.length;
      return listed.every((p) => canEnd(p, ends)) && (!extra || canEnd(node.additionalProperties, ends));
    }
    if (type !== "array") return true;
    const prefix: unknown[] = Array.isArray(node.prefixItems) ? node.prefixItems : [];
    const atLeast = typeof node.minItems === "number" ? node.minItems : 0;
    return prefix.every((item) => canEnd(item, ends)) && (atLeast <= prefix.length || canEnd(node.items, ends));
  });
}

/** A definition no answer of which ends (a property that always holds itself again) would run to max_tokens: refused. */
function refuseEndless(defs: Readonly<Record<string, unknown>>): void {
  const ends = new Set<string>();
  for (let grew = true; grew;) {
    grew = false;
    for (const [name, def] of Object.entries(defs)) {
      if (ends.has(name) || !canEnd(def, ends)) continue;
      ends.add(name);
      grew = true;
    }
  }
  const endless = Object.keys(defs).find((name) => !ends.has(name));
  if (endless !== undefined)
    throw new Error(
      `no answer of the definition ${quoteValue(endless)} ends: it holds itself again in every answer (the grammar writes every ` +
        "listed property, required or not); let it stop through an alternative such as null, or a list that may be empty",
    );
}

/** The definitions a schema may begin with, writing nothing first: itself a reference, or an alternative that is. */
function firstReferences(node: unknown, into: string[] = []): string[] {
  if (!isSchemaObject(node)) return into;
  if (typeof node.$ref === "string") into.push(node.$ref.slice(DEF_PREFIX.length));
  if (Array.isArray(node.oneOf)) for (const alternative of node.oneOf) firstReferences(alternative, into);
  return into;
}

/** llama.cpp refuses a grammar whose rule can come back to itself before writing anything: such a loop of definitions is named. */
function refuseLeftRecursion(defs: Readonly<Record<string, unknown>>): void {
  const visiting: string[] = [];
  const done = new Set<string>();
  const visit = (name: string): void => {
    if (done.has(name)) return;
    const loop = visiting.indexOf(name);
    if (loop !== -1) {
      const chain = [...visiting.slice(loop), name].join(" → ");
      throw new Error(`the definitions refer back to themselves before writing anything (${chain}); the grammar cannot hold that loop`);
    }
    visiting.push(name);
    for (const next of firstReferences(defs[name])) visit(next);
    visiting.pop();
    done.add(name);
  };
  for (const name of Object.keys(defs)) visit(name);
}

/**
 * The schema as node-llama-cpp is given it: references grounded, every keyword
 * in the terms it holds, and no `format` it would read as "only the empty
 * string". Its definitions are then checked as the grammar will have them
 * (types put into alternatives, lists of types split): a loop that refers back
 * before writing anything (left recursion), one no answer of which ends, and
 * alternatives through which a value begins in thousands of ways, are refused.
 */
export function grammarSchemaOf(schema: unknown): unknown {
  const held = withoutUnheldFormats(documentedSchemaOf(schema));
  if (isSchemaObject(held) && isSchemaObject(held.$defs)) {
    refuseLeftRecursion(held.$defs);
    refuseEndless(held.$defs);
  }
  if (grammarBeginnings(held) > MAX_GRAMMAR_BEGINNINGS) {
    throw new Error(
      `a value of it can begin in more than ${MAX_GRAMMAR_BEGINNINGS} ways, each of which llama.cpp would walk when it loads the grammar ` +
        "(alternatives that begin alike through references, such as an anyOf naming one definition twice, double them at every level they nest); " +
        "make the alternatives differ, or nest fewer of them",
    );
  }
  return held;
}

/**
 * The schema as the prompt documents it to the model: in the terms
 * node-llama-cpp's documentation reads (it reads `oneOf` and one `type`, so an
 * `anyOf` with null or a list of types would vanish from it), with every
 * `format` kept as a hint, held or not.
 */
export const documentedSchemaOf = (schema: unknown): unknown => toGrammarSchema(groundReferences(schema));

/** The schema without the string formats node-llama-cpp does not hold (it would allow only "" for them); every other keyword kept. */
function withoutUnheldFormats(schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema;
  const out = mapSubschemas(schema, "", withoutUnheldFormats);
  if (typeof schema.format === "string" && !HELD_FORMATS.has(schema.format)) delete out.format;
  return out;
}

export function toGrammarSchema(schema: unknown, path = "schema"): unknown {
  if (schema === false) throw new Error(`${path} is false, which no value meets`);
  if (schema === true) throw new Error(`${path} is true (any value), which the grammar cannot hold; give it a 'type'`);
  if (!isSchemaObject(schema)) return schema;
  const at = (key: string): string => `${path}.${key}`;
  // node-llama-cpp writes only scalar literals: an object or list in `const` or `enum` becomes the schema of exactly that value.
  if ("const" in schema && isStructured(schema.const)) return toGrammarSchema(literalSchema(schema.const), at("const"));
  if (Array.isArray(schema.enum) && schema.enum.some(isStructured)) {
    return toGrammarSchema({ oneOf: schema.enum.map(literalSchema) }, at("enum"));
  }
  for (const key of UNHELD_KEYWORDS) {
    if (key in schema) throw new Error(`'${key}' at ${path} is not held by the grammar; write the schema without it`);
  }
  const extraProperties = schema.additionalProperties !== undefined && schema.additionalProperties !== false;
  for (const key of extraProperties ? [...REPEAT_BOUNDS, ...PROPERTY_BOUNDS] : REPEAT_BOUNDS) {
    const bound = schema[key];
    if (typeof bound === "number" && bound > MAX_GRAMMAR_REPEAT)
      throw new Error(`${at(key)} is ${bound}; the grammar holds bounds up to ${MAX_GRAMMAR_REPEAT}, so use a smaller one`);
  }
  // Without any of these node-llama-cpp allows only null: an answer that meets the schema only by accident.
  if (!["type", "enum", "const", "$ref", "oneOf", "anyOf"].some((key) => key in schema))
    throw new Error(`${path} has no 'type' (nor 'enum', 'const', '$ref' or alternatives), so the grammar would allow only null; give it a 'type'`);
  if ("anyOf" in schema && "oneOf" in schema) throw new Error(`${path} has both 'anyOf' and 'oneOf'; the grammar holds one list of alternatives`);
  if (Array.isArray(schema.items)) throw new Error(`${at("items")} is a list; write the tuple as 'prefixItems'`);
  const { type } = schema;
  if (type !== undefined) {
    const types: unknown[] = Array.isArray(type) ? type : [type];
    for (const t of types) if (typeof t !== "string" || !JSON_TYPES.has(t)) throw new Error(`unknown type ${quoteValue(t)} at ${at("type")}`);
    if (types.length === 0) throw new Error(`${at("type")} is an empty list, which no value meets`);
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  const choosing = alternatives !== undefined || typeof schema.$ref === "string";
  if (typeof schema.$ref === "string" && type !== undefined)
    throw new Error(`'type' beside '$ref' at ${path} is not held by the grammar; put it in the definition`);
  if (alternatives !== undefined && typeof type === "string" && Array.isArray(alternatives)) {
    // node-llama-cpp reads only the alternatives: the type goes into each one that has none of its own.
    const { type: _type, ...rest } = schema;
    const key = schema.anyOf === undefined ? "oneOf" : "anyOf";
    const typed = alternatives.map((sub: unknown) => (isSchemaObject(sub) && !("type" in sub) && !("$ref" in sub) ? { type, ...sub } : sub));
    return toGrammarSchema({ ...rest, [key]: typed }, path);
  }
  if (choosing) {
    const dropped = SHAPE_KEYWORDS.find((key) => key in schema);
    if (dropped !== undefined) {
      const by = alternatives === undefined ? "'$ref'" : schema.anyOf === undefined ? "'oneOf'" : "'anyOf'";
      throw new Error(`'${dropped}' beside ${by} at ${path} is not held by the grammar; put it in each alternative (or the definition)`);
    }
  }
  if (Array.isArray(type) && !choosing && schema.enum === undefined && schema.const === undefined) {
    const { type: _types, $defs, ...rest } = schema;
    // Each alternative keeps only its own type's keywords: with every keyword in every one, a nest of such
    // lists converted each subschema once per type per level (7 types 8 deep, 753 bytes, took 30 s).
    const oneOf = type.length === 1 ? undefined : type.map((t: unknown) => ({ ...keywordsOf(rest, t as string), type: t }));
    return toGrammarSchema(
      oneOf === undefined ? { ...schema, type: type[0] as unknown } : { oneOf, ...($defs === undefined ? {} : { $defs }) },
      path,
    );
  }
  const out: Record<string, unknown> = { ...schema };
  if (schema.anyOf !== undefined) {
    delete out.anyOf;
    out.oneOf = schema.anyOf;
  }
  if (Array.isArray(out.oneOf)) {
    const key = schema.anyOf === undefined ? "oneOf" : "anyOf";
    out.oneOf = out.oneOf.map((sub: unknown, i) => toGrammarSchema(sub, `${at(key)}[${i}]`));
  }
  for (const key of ["properties", "$defs", "definitions"]) {
    const table = schema[key];
    if (!isSchemaObject(table)) continue;
    // Keys here are property names (a property may be called "type").
    out[key] = Object.fromEntries(Object.entries(table).map(([name, sub]) => [name, toGrammarSchema(sub, `${at(key)}.${name}`)]));
  }
  if (isSchemaObject(schema.items)) out.items = toGrammarSchema(schema.items, at("items"));
  if (isSchemaObject(schema.additionalProperties))
    out.additionalProperties = toGrammarSchema(schema.additionalProperties, at("additionalProperties"));
  if (Array.isArray(schema.prefixItems))
    out.prefixItems = schema.prefixItems.map((sub: unknown, i) => toGrammarSchema(sub, `${at("prefixItems")}[${i}]`));
  if (schema.type === "object") checkObjectBounds(schema, path);
  if (
    schema.type === "array" &&
    Array.isArray(schema.prefixItems) &&
    typeof schema.maxItems === "number" &&
    schema.maxItems < schema.prefixItems.length
  ) {
    throw new Error(`maxItems (${schema.maxItems}) is less than the ${schema.prefixItems.length} prefixItems at ${path}`);
  }
  return out;
}

/** node-llama-cpp writes every listed property, required or not, and no other unless additionalProperties allows it. */
function checkObjectBounds(schema: Schema, path: string): void {
  const names = isSchemaObject(schema.properties) ? Object.keys(schema.properties) : [];
  const missing = Array.isArray(schema.required)
    ? schema.required.find((name: unknown) => typeof name !== "string" || !names.includes(name))
    : undefined;
  if (missing !== undefined)
    throw new Error(
      `'required' names ${quoteValue(missing)}, which is not in 'properties', at ${path}; the grammar writes only the listed properties`,
    );
  if (typeof schema.maxProperties === "number" && schema.maxProperties < names.length) {
    throw new Error(`maxProperties (${schema.maxProperties}) is less than the ${names.length} properties the grammar always writes, at ${path}`);
  }
  const closed = schema.additionalProperties === undefined || schema.additionalProperties === false;
  if (closed && typeof schema.minProperties === "number" && schema.minProperties > names.length) {
    throw new Error(`minProperties (${schema.minProperties}) is more than the ${names.length} properties allowed at ${path}`);
  }
}

/** GBNF that admits exactly one of the labels. */
export function labelGrammar(labels: readonly string[]): string {
  return factorLiteralAlternatives(`root ::= ${labels.map(gbnfString).join(" | ")}`);
}

type SchemaToGbnf = (schema: unknown) => string;
let schemaToGbnf: Promise<SchemaToGbnf> | undefined;

/**
 * node-llama-cpp's (pinned 3.21.1) writer of a JSON schema's GBNF, without the
 * parse createGrammarForJsonSchema does at once: the text must be checked
 * before llama.cpp parses it. The package does not export it, so it is loaded
 * from its file beside the package's entry point.
 */
function gbnfForSchema(): Promise<SchemaToGbnf> {
  // createRequire rather than import.meta.resolve, which Node 20 has only from 20.6.
  schemaToGbnf ??= import(
    new URL("./utils/gbnfJson/getGbnfGrammarForGbnfJsonSchema.js", pathToFileURL(createRequire(import.meta.url).resolve("node-llama-cpp"))).href
  ).then((module: { getGbnfGrammarForGbnfJsonSchema?: unknown }) => {
    if (typeof module.getGbnfGrammarForGbnfJsonSchema !== "function")
      throw new Error("node-llama-cpp no longer has getGbnfGrammarForGbnfJsonSchema where it was");
    return module.getGbnfGrammarForGbnfJsonSchema as SchemaToGbnf;
  });
  return schemaToGbnf;
}

/**
 * The GBNF written for a JSON schema, as llama.cpp is handed it, without
 * parsing it; throws (plain errors) for a schema the grammar cannot hold.
 */
export async function schemaGbnf(schema: unknown): Promise<string> {
  const write = await gbnfForSchema();
  return factorLiteralAlternatives(endAtRootValue(calendarDates(strictNumbers(escapedControls(write(grammarSchemaOf(schema)))))));
}

/**
 * node-llama-cpp writes a string the grammar holds (a `const` or `enum` value, a property name) into its literal
 * escaping only `\`, `"`, tab, CR and LF, so any other control character (U+0001 to U+001F: \b, \f, …) came out
 * raw in the answer, which JSON does not allow in a string: JSON.parse failed on a schema-valid answer. Each is
 * written as its JSON escape (`\u0001`) instead, which reads back as the character. No other part of the grammar
 * holds a raw control character (its rules are separated by raw newlines, which this leaves alone).
 */
const escapedControls = (gbnf: string): string =>
  gbnf.replace(/[\u0001-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => `\\\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

/** Notes for people, which the grammar never holds. */
const NOTE_KEYS = new Set(["description", "title", "$comment", "examples", "default"]);

/** Keys whose values are data, never schemas: a U+0000 or a number there is not what the grammar holds. */
const DATA_KEYS = new Set([...NOTE_KEYS, "const", "enum"]);

/** Every value in a schema with its path, and every key (`key` set), data subtrees left out. */
function* schemaNodes(node: unknown, path: string): Generator<{ path: string; value: unknown; key?: string; parent?: Schema }> {
  if (Array.isArray(node)) {
    for (const [i, item] of node.entries()) yield* schemaNodes(item, `${path}[${i}]`);
    return;
  }
  if (!isSchemaObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    yield { path, value, key, parent: node };
    if (!DATA_KEYS.has(key) || path.endsWith(".properties") || path.endsWith(".$defs") || path.endsWith(".definitions"))
      yield* schemaNodes(value, `${path}.${key}`);
  }
}

const holdsNul = (value: unknown): boolean =>
  typeof value === "string"
    ? value.includes("\0")
    : typeof value === "object" && value !== null && Object.entries(value).some(([key, v]) => key.includes("\0") || holdsNul(v));

/** Where a U+0000 the grammar holds is, in a caller's terms: a name, a string, or a `const` or `enum` holding one. */
function locateNul(schema: unknown): string | undefined {
  for (const { path, value, key } of schemaNodes(schema, "schema")) {
    const named = /\.(properties|\$defs|definitions)$/.test(path);
    if (key!.includes("\0")) return `a name in ${path}`;
    if (!named && NOTE_KEYS.has(key!)) continue;
    if (typeof value === "string" ? value.includes("\0") : !named && DATA_KEYS.has(key!) && holdsNul(value)) return `${path}.${key!}`;
  }
  return undefined;
}

/**
 * The repetition llama.cpp would reject, named by the keyword behind it where
 * one fits: node-llama-cpp repeats a string's character `maxLength` times, the
 * items after the first (and after `prefixItems`) and the properties past the
 * listed ones, so a bound is at most that many more than the count.
 */
function locateRepetition(schema: unknown, problem: Extract<GrammarProblem, { kind: "repetition" }>): string {
  const { count, pieceRules, min, max } = problem;
  const allowed = allowedCount(pieceRules);
  if (allowed === 0) return repetitionLimit(pieceRules, count);
  const candidates: Array<{ path: string; key: string; value: number }> = [];
  for (const { path, value, key, parent } of schemaNodes(schema, "schema")) {
    if (typeof value !== "number" || !/^(min|max)(Length|Items|Properties)$/.test(key!)) continue;
    if (!(max === undefined ? key!.startsWith("min") : key!.startsWith("max") || min === max)) continue;
    const before = key!.endsWith("Length")
      ? 0
      : key!.endsWith("Items")
        ? (Array.isArray(parent!.prefixItems) ? parent!.prefixItems.length : 0) + 1
        : (isSchemaObject(parent!.properties) ? Object.keys(parent!.properties).length : 0) + 1;
    const over = Math.floor(value) - count;
    if (over >= 0 && over <= before) candidates.push({ path: `${path}.${key!}`, key: key!, value });
  }
  if (candidates.length === 1) {
    const { path, key, value } = candidates[0]!;
    return `${path} is ${value}: ${repetitionLimit(pieceRules, count, `${key} at most ${Math.floor(value) - (count - allowed)} here`)}`;
  }
  const which = candidates.length === 0 ? "the length, items or properties bound behind it" : `one of ${candidates.map((c) => c.path).join(", ")}`;
  return repetitionLimit(pieceRules, count, `at most ${allowed} here; lower ${which}`);
}

/** A grammar problem in a caller's terms: the keyword or string in the schema behind it where it can be told. */
function locateProblem(schema: unknown, problem: GrammarProblem): string {
  if (problem.kind === "repetition") return locateRepetition(schema, problem);
  if (problem.kind === "nul") {
    const where = locateNul(schema);
    if (where !== undefined) return `${where} holds the character U+0000, which llama.cpp's grammars cannot hold; leave it out`;
  }
  return describeGrammarProblem(problem);
}

/** Approximate bytes of grammar text the cache keeps before it drops the least recently used. */
const GRAMMAR_CACHE_BUDGET = 8 * 1024 * 1024;

interface CacheEntry {
  grammar: Promise<LlamaGrammar>;
  /** The key's length, plus the grammar text's once it is built. */
  size: number;
}

/** The exponent node-llama-cpp (pinned) lets every JSON number carry: up to 16 digits, far past what a double holds. */
const LOOSE_EXPONENT = ' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';
const NUMBER_RULES = /^((?:integer|fractional)-number-rule) ::= (.*)$/gm;

/**
 * node-llama-cpp's number rules made to hold what the schema says: an integer
 * has no exponent (`5e-3` passed for an integer, and `23e5063722` is Infinity
 * to any JSON parser), and a number's exponent has at most two digits, so every
 * number the grammar allows is a finite double.
 */
export function strictNumbers(gbnf: string): string {
  return gbnf.replace(NUMBER_RULES, (line, name: string, body: string) => {
    if (!body.endsWith(LOOSE_EXPONENT)) return line;
    const mantissa = body.slice(0, -LOOSE_EXPONENT.length);
    return `${name} ::= ${name.startsWith("integer") ? mantissa : `${mantissa} ([eE] [-+]? [0-9]{1,2})?`}`;
  });
}

/** node-llama-cpp's date (pinned 3.21.1): any day 01–31 in any month, so 2023-02-31 and 2024-06-31 pass. */
const LOOSE_DATE = '[0-9]{4} "-" ("0" [1-9] | "1" [012]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])';
const DAY_TO_28 = '("0" [1-9] | "1" [0-9] | "2" [0-8])';
/** Years divisible by 4, but by 100 only when by 400 (the Gregorian calendar's leap years). */
const LEAP_YEAR = '([0-9]{2} ("0" [48] | [2468] [048] | [13579] [26]) | ([02468] [048] | [13579] [26]) "00")';
const CALENDAR_DATE =
  `([0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ` +
  `("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02-" ${DAY_TO_28}) | ${LEAP_YEAR} "-02-29")`;

/** Every date node-llama-cpp writes (`format` date and date-time) made a calendar date: days as many as the month has. */
export const calendarDates = (gbnf: string): string => gbnf.replaceAll(LOOSE_DATE, CALENDAR_DATE);

/**
 * node-llama-cpp ends its root rule with four newlines and any more after the
 * value: its own generation loop stops on them and trims them. Ours does not,
 * so they were answered (and billed); without them the grammar ends with the
 * root value and only an end-of-generation token may follow.
 */
// `[^\n]`, not `.`: node-llama-cpp writes a property name's U+2028 or U+2029 raw into the rule, and `.` stops there.
const ROOT_PADDING = /^(root ::= [^\n]*) "\\n\\n\\n\\n" \[\\n\]\*$/m;

export const endAtRootValue = (gbnf: string): string => gbnf.replace(ROOT_PADDING, "$1");

/**
 * `json_object`: llama.cpp's JSON grammar (json.gbnf, which node-llama-cpp
 * ships) with a root that ends at its closing brace, where that file lets
 * whitespace follow; and, as for schemas, exponents of at most two digits.
 */
export const JSON_OBJECT_GRAMMAR = String.raw`root   ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}"
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,2})? ws
ws     ::= | " " | "\n" [ \t]{0,20}`;

/**
 * The GBNF a JSON schema is enforced with; refused with a 400 naming `param` when it cannot, and when
 * llama.cpp's parser would reject the grammar. Needs no loaded model: start-up checks specialists' schemas with it.
 */
export async function enforceableSchemaGbnf(schema: Readonly<Record<string, unknown>>, param: string): Promise<string> {
  const refuse = (message: string): Error => errors.invalidParameter(param, `this JSON schema cannot be enforced: ${message}`);
  let gbnf: string;
  try {
    gbnf = await schemaGbnf(schema);
  } catch (error) {
    throw refuse((error as Error).message);
  }
  const problem = grammarProblem(gbnf);
  if (problem !== undefined) throw refuse(locateProblem(schema, problem));
  return gbnf;
}

/**
 * Compiles output constraints to llama.cpp grammars, once per distinct constraint:
 * a specialist's grammar is built on its first request and reused after. Callers
 * choose their own schemas, so the cache is bounded: least recently used first out.
 * A caller's own schema or tools are cached under its scope (its account): a build
 * takes milliseconds, so a grammar another account left would tell, by how fast it
 * came, what that account asks for.
 */
export class GrammarCache {
  private readonly cache = new Map<string, CacheEntry>();
  private bytes = 0;

  constructor(
    private readonly llama: Llama,
    private readonly budgetBytes = GRAMMAR_CACHE_BUDGET,
  ) {}

  /** Approximate bytes held (keys and grammar texts), at most the budget once builds settle. */
  get sizeBytes(): number {
    return this.bytes;
  }

  get entries(): number {
    return this.cache.size;
  }

  /** `scope`: whose entries a caller's schema may reuse; absent, anyone's (a specialist's own, or a fixed grammar). */
  get(constraint: OutputConstraint, scope?: string): Promise<LlamaGrammar | undefined> {
    if (constraint.type === "text") return Promise.resolve(undefined);
    // A schema's name and strict (a remote upstream's) do not change its grammar: one entry whatever they are.
    const key = constraint.type === "json_schema" ? { type: constraint.type, schema: constraint.schema, scope } : constraint;
    return this.cached(JSON.stringify(key), () => this.build(constraint));
  }

  /** A grammar from GBNF text (tool calls), cached beside the constraints' grammars, under `scope` as `get`'s. */
  fromText(gbnf: string, scope?: string): Promise<LlamaGrammar> {
    return this.cached(`gbnf:${scope ?? ""}:${gbnf}`, () => this.parse(gbnf));
  }

  /**
   * The GBNF a JSON schema is enforced with; refused with a 400 naming `param`
   * when it cannot, and when llama.cpp's parser would reject the grammar
   * (which would print it, the schema's values in it, to stderr).
   */
  jsonSchemaGbnf(schema: Readonly<Record<string, unknown>>, param: string): Promise<string> {
    return enforceableSchemaGbnf(schema, param);
  }

  private cached(key: string, build: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      // Re-insert: a Map iterates in insertion order, so the first entry is the least recently used.
      this.cache.delete(key);
      this.cache.set(key, cached);
      return cached.grammar;
    }
    const entry: CacheEntry = { grammar: build(), size: key.length };
    this.cache.set(key, entry);
    this.bytes += entry.size;
    entry.grammar.then(
      (grammar) => {
        if (this.cache.get(key) !== entry) return;
        entry.size += grammar.grammar.length;
        this.bytes += grammar.grammar.length;
        this.evictOverBudget();
      },
      // A schema that fails to compile must not poison the cache for later fixes.
      () => this.remove(key, entry),
    );
    this.evictOverBudget();
    return entry.grammar;
  }

  private remove(key: string, entry: CacheEntry): void {
    if (this.cache.get(key) !== entry) return;
    this.cache.delete(key);
    this.bytes -= entry.size;
  }

  private evictOverBudget(): void {
    // A grammar in use stays alive through its evaluation state; dropping it here only forgets it.
    for (const [key, entry] of this.cache) {
      if (this.bytes <= this.budgetBytes) break;
      this.remove(key, entry);
    }
  }

  /** A grammar llama.cpp parses; one it would reject (and print to stderr) is refused first, its text left out of the error. */
  private parse(gbnf: string): Promise<LlamaGrammar> {
    const problem = grammarProblem(gbnf);
    if (problem !== undefined) return Promise.reject(new Error(`llama.cpp would reject this grammar: ${describeGrammarProblem(problem)}`));
    return this.llama.createGrammar({ grammar: gbnf });
  }

  private async build(constraint: Exclude<OutputConstraint, { type: "text" }>): Promise<LlamaGrammar> {
    switch (constraint.type) {
      case "labels":
        return this.parse(labelGrammar(constraint.labels));
      case "json_object":
        return this.parse(JSON_OBJECT_GRAMMAR);
      case "json_schema":
        // jsonSchemaGbnf has checked the text already.
        return this.llama.createGrammar({ grammar: await this.jsonSchemaGbnf(constraint.schema, "response_format.json_schema.schema") });
    }
  }
}
