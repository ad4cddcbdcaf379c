import { isSchemaObject, mapSubschemas } from "../../schema/json-schema-keywords.js";

/**
 * How many ways a grammar may begin one value. llama.cpp walks every path through the rules a value can
 * begin with when it loads a grammar (its left-recursion check visits a rule again for every path that
 * reaches it), so alternatives that name one definition twice, nested through references, double the
 * walk at every level: a 2.7 KB schema held a node's event loop for hours, and only SIGKILL ended it.
 * Real schemas stay far below this: a 512-value enum begins 512 ways.
 */
export const MAX_GRAMMAR_BEGINNINGS = 4096;

const DEF_PREFIX = "#/$defs/";
const CAP = MAX_GRAMMAR_BEGINNINGS + 1;

/**
 * The most ways any value of a grammar schema (references grounded into `$defs`, alternatives as `oneOf`)
 * may begin, up to just over `MAX_GRAMMAR_BEGINNINGS`: alternatives add up, a reference counts as its
 * definition, anything else (a typed value, a `const`) begins one way and an `enum` one way per value.
 * Definitions that refer back before writing anything are refused before this runs (left recursion),
 * so the references followed here form no loop; one met again mid-walk would count once.
 */
export function grammarBeginnings(schema: unknown): number {
  const defs: Readonly<Record<string, unknown>> = isSchemaObject(schema) && isSchemaObject(schema.$defs) ? schema.$defs : {};
  const byDefinition = new Map<string, number>();
  const walking = new Set<string>();
  const beginnings = (node: unknown): number => {
    if (!isSchemaObject(node)) return 1;
    if (typeof node.$ref === "string") {
      const name = node.$ref.slice(DEF_PREFIX.length);
      const known = byDefinition.get(name);
      if (known !== undefined) return known;
      if (walking.has(name) || !Object.hasOwn(defs, name)) return 1;
      walking.add(name);
      const count = beginnings(defs[name]);
      walking.delete(name);
      byDefinition.set(name, count);
      return count;
    }
    if (Array.isArray(node.oneOf)) return node.oneOf.reduce((sum: number, alternative) => Math.min(CAP, sum + beginnings(alternative)), 0);
    if (Array.isArray(node.enum)) return Math.min(CAP, Math.max(1, node.enum.length));
    return 1;
  };
  // Every subschema begins a value somewhere (a property's, a list item's, a definition's): the most of them counts.
  let most = 0;
  const visit = (node: unknown): void => {
    if (most > MAX_GRAMMAR_BEGINNINGS || !isSchemaObject(node)) return;
    most = Math.max(most, beginnings(node));
    mapSubschemas(node, "", (sub) => {
      visit(sub);
      return sub;
    });
  };
  visit(schema);
  return most;
}
