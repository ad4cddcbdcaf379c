import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { errors } from "../../errors.js";
import type { OutputConstraint } from "../types.js";

const gbnfString = (s: string): string => JSON.stringify(s);

const JSON_TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

/**
 * node-llama-cpp silently treats unknown `type` names as "anything"; a schema
 * the caller got wrong must be refused, not loosely enforced.
 */
function checkSchemaTypes(schema: unknown, path: string): void {
  if (Array.isArray(schema)) {
    schema.forEach((s, i) => checkSchemaTypes(s, `${path}[${i}]`));
    return;
  }
  if (typeof schema !== "object" || schema === null) return;
  for (const [key, value] of Object.entries(schema)) {
    if (key === "type") {
      const types: unknown[] = Array.isArray(value) ? value : [value];
      for (const t of types) if (typeof t !== "string" || !JSON_TYPES.has(t)) throw new Error(`unknown type ${JSON.stringify(t)} at ${path}.type`);
    } else if (["properties", "$defs", "definitions", "patternProperties"].includes(key) && typeof value === "object" && value !== null) {
      // Keys here are property names (a property may be called "type").
      for (const [name, sub] of Object.entries(value)) checkSchemaTypes(sub, `${path}.${key}.${name}`);
    } else if (key !== "enum" && key !== "const") {
      checkSchemaTypes(value, `${path}.${key}`);
    }
  }
}

/** GBNF that admits exactly one of the labels. */
export function labelGrammar(labels: readonly string[]): string {
  return `root ::= ${labels.map(gbnfString).join(" | ")}`;
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

/**
 * Compiles output constraints to llama.cpp grammars, once per distinct constraint:
 * a specialist's grammar is built on its first request and reused after. Callers
 * choose their own schemas, so the cache is bounded: least recently used first out.
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

  get(constraint: OutputConstraint): Promise<LlamaGrammar | undefined> {
    if (constraint.type === "text") return Promise.resolve(undefined);
    return this.cached(JSON.stringify(constraint), () => this.build(constraint));
  }

  /** A grammar from GBNF text (tool calls), cached beside the constraints' grammars. */
  fromText(gbnf: string): Promise<LlamaGrammar> {
    return this.cached(`gbnf:${gbnf}`, () => this.llama.createGrammar({ grammar: gbnf }));
  }

  /** The GBNF a JSON schema is enforced with; refused with a 400 naming `param` when it cannot. */
  async jsonSchemaGbnf(schema: Readonly<Record<string, unknown>>, param: string): Promise<string> {
    try {
      checkSchemaTypes(schema, "schema");
      // node-llama-cpp validates the schema subset it supports and throws on the rest.
      return strictNumbers((await this.llama.createGrammarForJsonSchema(schema as never)).grammar);
    } catch (error) {
      throw errors.invalidParameter(param, `this JSON schema cannot be enforced: ${(error as Error).message}`);
    }
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

  private async build(constraint: Exclude<OutputConstraint, { type: "text" }>): Promise<LlamaGrammar> {
    switch (constraint.type) {
      case "labels":
        return this.llama.createGrammar({ grammar: labelGrammar(constraint.labels) });
      case "json_object":
        return this.llama.getGrammarFor("json");
      case "json_schema":
        return this.llama.createGrammar({ grammar: await this.jsonSchemaGbnf(constraint.schema, "response_format.json_schema.schema") });
    }
  }
}
