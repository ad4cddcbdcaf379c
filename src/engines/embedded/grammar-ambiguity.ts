import { isSchemaObject } from "../../schema/json-schema-keywords.js";

/**
 * How many readings of one answer llama.cpp's grammar may follow at once. It keeps a parse stack for
 * every way the text so far can be read, and alternatives that match the same text (an `anyOf` naming
 * one definition twice) each keep theirs: nested through references, or recursion, their number doubles
 * at every level, and a 2.7 KB schema held a node's event loop for hours while llama.cpp built its first
 * stacks. Real schemas stay far below this (a 512-value enum is 512 readings at its first character).
 */
export const MAX_GRAMMAR_READINGS = 4096;

const KINDS = ["object", "array", "string", "number", "boolean", "null"] as const;
type Kind = (typeof KINDS)[number];
const KIND_INDEX: Readonly<Record<string, number>> = { object: 0, array: 1, string: 2, number: 3, integer: 3, boolean: 4, null: 5 };
const N = KINDS.length;
const CAP = MAX_GRAMMAR_READINGS + 1;

/**
 * The readings a schema's answers may have at once, by the kind of value the parser is in: `top[k]`
 * at the value's own level (a value of kind k begun, its first character read), `deep[k*N+j]` inside
 * one of its members of kind j (and deeper). Alternatives add up; a container holds one reading of
 * itself times whatever its member being read holds. The kind of a value (its first character) tells
 * alternatives of other kinds apart, which is what keeps a recursive `anyOf` of a list and a null at
 * one reading per level instead of a sum over levels.
 */
interface Readings {
  top: number[];
  deep: number[];
}

const none = (): Readings => ({ top: new Array<number>(N).fill(0), deep: new Array<number>(N * N).fill(0) });
const capped = (n: number): number => (n > CAP ? CAP : n);

/** The most readings anywhere inside a value of kind k. */
function within(r: Readings, k: number): number {
  let most = r.top[k]!;
  for (let j = 0; j < N; j++) most = Math.max(most, r.deep[k * N + j]!);
  return most;
}

const most = (r: Readings): number => Math.max(...KINDS.map((_, k) => within(r, k)));

function kindOfValue(value: unknown): number {
  if (value === null) return KIND_INDEX.null!;
  if (Array.isArray(value)) return KIND_INDEX.array!;
  const type = typeof value;
  return type === "object"
    ? KIND_INDEX.object!
    : type === "string"
      ? KIND_INDEX.string!
      : type === "boolean"
        ? KIND_INDEX.boolean!
        : KIND_INDEX.number!;
}

/** The member schemas of an object or a list: each is read one at a time, after its key or comma. */
function membersOf(node: Record<string, unknown>, kind: Kind): unknown[] {
  const members: unknown[] = [];
  if (kind === "object") {
    if (isSchemaObject(node.properties)) members.push(...Object.values(node.properties));
    if (isSchemaObject(node.patternProperties)) members.push(...Object.values(node.patternProperties));
    if (isSchemaObject(node.additionalProperties)) members.push(node.additionalProperties);
  } else {
    if (Array.isArray(node.prefixItems)) members.push(...(node.prefixItems as unknown[]));
    if (Array.isArray(node.items)) members.push(...(node.items as unknown[]));
    else if (isSchemaObject(node.items)) members.push(node.items);
  }
  return members;
}

type Definitions = Readonly<Record<string, unknown>>;

function readingsOf(node: unknown, defs: Definitions, known: ReadonlyMap<string, Readings>, visits: { count: number }): Readings {
  visits.count++;
  const out = none();
  if (!isSchemaObject(node)) return out;
  if (typeof node.$ref === "string") return known.get(node.$ref.slice(DEF_PREFIX.length)) ?? out;
  if (Array.isArray(node.oneOf)) {
    for (const alternative of node.oneOf) {
      const r = readingsOf(alternative, defs, known, visits);
      for (let i = 0; i < N; i++) out.top[i] = capped(out.top[i]! + r.top[i]!);
      for (let i = 0; i < N * N; i++) out.deep[i] = capped(out.deep[i]! + r.deep[i]!);
    }
    return out;
  }
  if ("const" in node) {
    out.top[kindOfValue(node.const)] = 1;
    return out;
  }
  if (Array.isArray(node.enum)) {
    for (const value of node.enum) out.top[kindOfValue(value)] = capped(out.top[kindOfValue(value)]! + 1);
    return out;
  }
  const k = typeof node.type === "string" ? KIND_INDEX[node.type] : undefined;
  if (k === undefined) return out;
  out.top[k] = 1;
  if (KINDS[k] !== "object" && KINDS[k] !== "array") return out;
  for (const member of membersOf(node, KINDS[k])) {
    const r = readingsOf(member, defs, known, visits);
    for (let j = 0; j < N; j++) out.deep[k * N + j] = Math.max(out.deep[k * N + j]!, within(r, j));
  }
  return out;
}

const DEF_PREFIX = "#/$defs/";

/** The definitions in the order their references end: a chain without loops is settled in one pass. */
function settlingOrder(defs: Definitions): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name) || !Object.hasOwn(defs, name)) return;
    seen.add(name);
    const refs: string[] = [];
    const collect = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (isSchemaObject(node)) {
        if (typeof node.$ref === "string") refs.push(node.$ref.slice(DEF_PREFIX.length));
        Object.values(node).forEach(collect);
      }
    };
    collect(defs[name]);
    refs.forEach(visit);
    order.push(name);
  };
  Object.keys(defs).forEach(visit);
  return order;
}

/** How much work the fixpoint may take: about 10 ms of the event loop at worst. */
const MAX_VISITS = 200_000;

/**
 * The most readings an answer of a grammar schema (references grounded into `$defs`, alternatives as
 * `oneOf`) may have at once, up to just over `MAX_GRAMMAR_READINGS`. Definitions that refer to
 * themselves are settled by repeating passes until nothing grows; growth that has not passed the limit
 * when the passes end is slow (a reading more per level), which no answer's depth makes costly.
 */
export function grammarReadings(schema: unknown): number {
  const defs: Definitions = isSchemaObject(schema) && isSchemaObject(schema.$defs) ? schema.$defs : {};
  const order = settlingOrder(defs);
  const known = new Map<string, Readings>();
  const visits = { count: 0 };
  // A loop of L definitions whose readings double at each turn passes the limit within 13 L passes; slower growth
  // (a reading more per level: a list of lists or of strings) is no danger, and would pass it only after thousands.
  const passes = 16 * (order.length + 1);
  for (let pass = 0, grew = true; grew && pass < passes && visits.count < MAX_VISITS; pass++) {
    grew = false;
    for (const name of order) {
      const r = readingsOf(defs[name], defs, known, visits);
      const before = known.get(name);
      if (before !== undefined && r.top.every((v, i) => v === before.top[i]) && r.deep.every((v, i) => v === before.deep[i])) continue;
      known.set(name, r);
      grew = true;
      if (most(r) > MAX_GRAMMAR_READINGS) return most(r);
    }
  }
  return most(readingsOf(schema, defs, known, visits));
}
