/**
 * Alternatives between string literals (an `enum`, a label set) written as a tree of their shared beginnings.
 *
 * llama.cpp's grammar keeps one parse stack per alternative still possible and checks every candidate token against
 * each: 512 `enum` strings sharing a 50-character beginning kept 512 stacks alive for 50 characters, ~49 ms a token on
 * a small model, and every request batched with it went at that pace. Written as `"aaa…" ( "0" | "1" | … )`, one
 * stack walks the shared part and the alternatives split only where the strings do.
 */

/** Fewer alternatives than this are left as written: the tree saves nothing worth a rewrite. */
const MIN_ALTERNATIVES = 8;
/** Groups nested deeper than this (strings each a prefix of the next) are written flat: llama.cpp parses groups recursively. */
const MAX_NESTING = 32;

interface TrieNode {
  end: boolean;
  next: Map<string, TrieNode>;
}

/** A GBNF string literal: JSON's escapes, except \b and \f, which GBNF lacks, written \x08 and \x0C. */
export const gbnfString = (s: string): string =>
  JSON.stringify(s).replace(/\\(["\\bfnrt]|u[0-9a-fA-F]{4})/g, (escape, what: string) => (what === "b" ? "\\x08" : what === "f" ? "\\x0C" : escape));

const ESCAPES: Readonly<Record<string, string>> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\", "[": "[", "]": "]" };

/** The text of a GBNF string literal (its quotes included), or undefined for an escape this reader does not know. */
function literalText(literal: string): string | undefined {
  let text = "";
  for (let i = 1; i < literal.length - 1; i++) {
    const c = literal[i]!;
    if (c !== "\\") {
      text += c;
      continue;
    }
    const kind = literal[i + 1] ?? "";
    const digits = kind === "x" ? 2 : kind === "u" ? 4 : kind === "U" ? 8 : 0;
    if (digits > 0) {
      const hex = literal.slice(i + 2, i + 2 + digits);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) return undefined;
      text += String.fromCodePoint(parseInt(hex, 16));
      i += 1 + digits;
    } else if (kind in ESCAPES) {
      text += ESCAPES[kind];
      i += 1;
    } else return undefined;
  }
  return text;
}

function trieOf(texts: readonly string[]): TrieNode {
  const root: TrieNode = { end: false, next: new Map() };
  for (const text of texts) {
    let node = root;
    // By code point: a surrogate pair is one character, never split between two literals.
    for (const c of text) {
      let child = node.next.get(c);
      if (child === undefined) node.next.set(c, (child = { end: false, next: new Map() }));
      node = child;
    }
    node.end = true;
  }
  return root;
}

/** The one way on from a node where no string ends, if there is exactly one. */
const soleBranch = (node: TrieNode): [string, TrieNode] | undefined =>
  !node.end && node.next.size === 1 ? node.next.entries().next().value : undefined;

/** The strings below `node`, each from just after it (a walk with a stack of its own: a string may be long). */
function suffixes(node: TrieNode): string[] {
  const below: string[] = [];
  const pending: Array<[TrieNode, string]> = [[node, ""]];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const [at, before] = item;
    for (const [c, child] of at.next) {
      if (child.end) below.push(before + c);
      pending.push([child, before + c]);
    }
  }
  return below;
}

/** `branches` as one choice; optional where a string ends at the node they leave. */
const choice = (branches: readonly string[], end: boolean): string =>
  end ? `( ${branches.join(" | ")} )?` : branches.length === 1 ? branches[0]! : `( ${branches.join(" | ")} )`;

/**
 * GBNF for what may follow `node`: its branches, each a literal as long as no string ends or splits within it.
 * Past MAX_NESTING groups (strings each a prefix of the next) the rest is written flat, as it came.
 */
function render(node: TrieNode, depth: number): string {
  if (depth >= MAX_NESTING) return choice(suffixes(node).map(gbnfString), node.end);
  const branches: string[] = [];
  for (const [first, child] of node.next) {
    let text = first;
    let at = child;
    for (let only = soleBranch(at); only !== undefined; only = soleBranch(at)) {
      text += only[0];
      at = only[1];
    }
    branches.push(at.next.size > 0 ? `${gbnfString(text)} ${render(at, depth + 1)}` : gbnfString(text));
  }
  return choice(branches, node.end);
}

/** The alternatives as one tree, or undefined when one of them cannot be read. */
function literalTree(literals: readonly string[]): string | undefined {
  const texts: string[] = [];
  for (const literal of literals) {
    const text = literalText(literal);
    if (text === undefined || text === "") return undefined;
    texts.push(text);
  }
  return render(trieOf(texts), 0);
}

const LITERAL = String.raw`"(?:[^"\\]|\\.)*"`;
const LITERAL_RULE = new RegExp(`^([\\w-]+) ::= (${LITERAL})$`);
const ONE_LITERAL = new RegExp(`^${LITERAL}$`);
const RULE = /^([\w-]+) ::= (.*)$/;

/**
 * Every rule that is a choice between string literals, or between rules that are each one string literal (how
 * node-llama-cpp writes an `enum`), rewritten as the tree of their shared beginnings. The language is the same.
 */
export function factorLiteralAlternatives(gbnf: string): string {
  const lines = gbnf.split("\n");
  const literalRules = new Map<string, string>();
  for (const line of lines) {
    const m = LITERAL_RULE.exec(line);
    if (m !== null) literalRules.set(m[1]!, m[2]!);
  }
  return lines
    .map((line) => {
      const m = RULE.exec(line);
      if (m === null) return line;
      const body = m[2]!.trim();
      const inner = body.startsWith("( ") && body.endsWith(" )") ? body.slice(2, -2) : body;
      const choices = inner.split(" | ");
      if (choices.length < MIN_ALTERNATIVES) return line;
      const literals: string[] = [];
      for (const choice of choices) {
        const literal = literalRules.get(choice) ?? (ONE_LITERAL.test(choice) ? choice : undefined);
        if (literal === undefined) return line;
        literals.push(literal);
      }
      const tree = literalTree(literals);
      return tree === undefined ? line : `${m[1]!} ::= ${tree}`;
    })
    .join("\n");
}
