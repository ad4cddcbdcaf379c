/**
 * Whether llama.cpp's grammar parser (the one node-llama-cpp 3.21.1 bundles,
 * src/llama-grammar.cpp) accepts a GBNF text, found without handing it over.
 *
 * Why: when that parser rejects a grammar it prints the whole text to stderr
 * (`parse: error parsing grammar: …` and then the grammar), past our logger,
 * and a grammar written from a caller's JSON schema holds the schema's values
 * (its `const` and `enum` strings, property names). Two things reject grammars
 * we write: its limit on repetitions, which is not a plain bound on the count
 * (below), and a U+0000, which ends the text where it stands (it is handed over
 * as a C string). So both are looked for here first, and a grammar that would
 * fail is refused with a message instead of being parsed.
 *
 * The limit, replayed exactly: a repetition (`*`, `+`, `?`, `{m}`, `{m,}`,
 * `{m,n}`) fails when the rules of the piece it repeats times its count reaches
 * 2000. The count is n when bounded and above 0, else m when above 0, else 1; an
 * m over 2000 fails, an n over 2000 is read as no bound. The piece's rules are
 * 1 for a literal, a class, a rule's name or `.`, and for a group the number of
 * symbols that parsing the group created: the group's own, one per name seen
 * there for the first time in the whole text (a name counts where it is first
 * referred to or defined), and those of repetitions inside it (max − min of
 * them when bounded, else 1). A repetition of a repetition multiplies. So
 * `( string-char-rule ){0,1000}` fails where string-char-rule is first named
 * (2 rules × 1000) and passes once it was named before (1 × 1000): only
 * replaying the parse over the whole text in order says which.
 *
 * Every other error the parser reports (malformed text, an undefined rule) is
 * replayed too, so that no text is handed over that would be printed.
 */

/** llama.cpp's MAX_REPETITION_THRESHOLD. */
export const REPETITION_LIMIT = 2000;

export type GrammarProblem =
  | { kind: "nul"; offset: number }
  /** `count` is the count the limit was computed with; `pieceRules` the rules of the piece repeated. */
  | { kind: "repetition"; rule: string; min: number; max: number | undefined; count: number; pieceRules: number }
  /** A repetition whose minimum is over the limit, whatever it repeats. */
  | { kind: "too-many"; rule: string; min: number }
  | { kind: "syntax"; message: string };

/** The most times a piece of `pieceRules` rules may be repeated (0 when it may not be repeated at all, nor made optional). */
export const allowedCount = (pieceRules: number): number => Math.floor((REPETITION_LIMIT - 1) / pieceRules);

class Rejected extends Error {
  constructor(readonly problem: GrammarProblem) {
    super("rejected");
  }
}

const syntax = (message: string): Rejected => new Rejected({ kind: "syntax", message });

const isDigit = (c: string): boolean => c >= "0" && c <= "9";
const isWordChar = (c: string): boolean => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c === "-" || isDigit(c);
const isHex = (c: string): boolean => isDigit(c) || (c >= "a" && c <= "f") || (c >= "A" && c <= "F");
const UINT64_MAX = 2n ** 64n - 1n;

/** One symbol pushed into a rule (a literal's characters, a class, a reference…): how many elements, and the names it refers to. */
interface Item {
  size: number;
  refs: readonly number[];
}

/**
 * The parse of llama_grammar_parser::parse, keeping only what its errors
 * depend on. llama.cpp keeps names and generated rules (`name_N`) in one table;
 * a generated name holds `_`, which no name in the text can, so here the
 * generated ones are only counted, and only names are looked up.
 */
class Replay {
  /** The names seen, to their ids. */
  private readonly names = new Map<string, number>();
  /** How many symbols there are: names and generated rules (symbol_ids.size()). */
  private symbolCount = 0;
  /** The names defined by a rule; a generated rule is always defined where it is made. */
  private readonly definedNames = new Set<number>();
  /** The rule being parsed, for the problems found in it. */
  private ruleName = "";
  /** The highest id given a rule (rules.size() − 1). */
  private topRule = -1;
  /** The names each rule refers to, by rule id; a repetition's rules share one entry (they refer to the same). */
  private readonly ruleRefs = new Map<number, readonly number[]>();

  constructor(private readonly src: string) {}

  private at(pos: number): string {
    return pos < this.src.length ? this.src[pos]! : "";
  }

  private symbolId(name: string): number {
    const known = this.names.get(name);
    if (known !== undefined) return known;
    const id = this.symbolCount++;
    this.names.set(name, id);
    return id;
  }

  private generateId(): number {
    return this.symbolCount++;
  }

  /** add_rule: a name's rule replaces an earlier one of the same name. */
  private addRule(id: number, refs: readonly number[], named: boolean): void {
    this.topRule = Math.max(this.topRule, id);
    if (named) this.definedNames.add(id);
    if (refs.length > 0) this.ruleRefs.set(id, refs);
    else this.ruleRefs.delete(id);
  }

  private space(pos: number, newlineOk: boolean): number {
    for (;;) {
      const c = this.at(pos);
      if (c === "#") {
        while (pos < this.src.length && this.at(pos) !== "\r" && this.at(pos) !== "\n") pos++;
      } else if (c === " " || c === "\t" || (newlineOk && (c === "\r" || c === "\n"))) pos++;
      else return pos;
    }
  }

  private name(pos: number): number {
    let end = pos;
    while (isWordChar(this.at(end))) end++;
    if (end === pos) throw syntax("expecting name");
    return end;
  }

  /** A non-negative integer as stoull reads it: more than 64 bits is an error. */
  private int(pos: number): { value: bigint; end: number } {
    let end = pos;
    while (isDigit(this.at(end))) end++;
    if (end === pos) throw syntax("expecting integer");
    const value = BigInt(this.src.slice(pos, end));
    if (value > UINT64_MAX) throw syntax("integer out of range");
    return { value, end };
  }

  private hex(pos: number, size: number): number {
    let i = 0;
    while (i < size && pos + i < this.src.length && isHex(this.at(pos + i))) i++;
    if (i !== size) throw syntax(`expecting ${size} hex chars`);
    return pos + size;
  }

  private char(pos: number): number {
    if (this.at(pos) === "\\") {
      const e = this.at(pos + 1);
      if (e === "x") return this.hex(pos + 2, 2);
      if (e === "u") return this.hex(pos + 2, 4);
      if (e === "U") return this.hex(pos + 2, 8);
      if ('trn\\"[]-'.includes(e) && e !== "") return pos + 2;
      throw syntax("unknown escape");
    }
    if (pos < this.src.length) return pos + (this.src.codePointAt(pos)! > 0xffff ? 2 : 1);
    throw syntax("unexpected end of input");
  }

  private token(pos: number): number {
    if (this.at(pos) !== "<") throw syntax("expecting '<'");
    pos++;
    // Without a vocabulary (node-llama-cpp gives none) only <[id]> parses.
    if (this.at(pos) !== "[") throw syntax("no vocab to parse token");
    pos = this.int(pos + 1).end;
    if (this.at(pos) !== "]") throw syntax("expecting ']'");
    if (this.at(pos + 1) !== ">") throw syntax("expecting '>'");
    return pos + 2;
  }

  parse(): void {
    let pos = this.space(0, true);
    while (pos < this.src.length) pos = this.rule(pos);
    // Every rule up to the highest id given one, and every rule referred to, must be defined.
    for (const id of this.names.values()) if (id <= this.topRule && !this.definedNames.has(id)) throw syntax("Undefined rule");
    for (const refs of this.ruleRefs.values()) {
      for (const ref of refs) if (!this.definedNames.has(ref)) throw syntax("Undefined rule identifier");
    }
  }

  private rule(pos: number): number {
    const nameEnd = this.name(pos);
    this.ruleName = this.src.slice(pos, nameEnd);
    pos = this.space(nameEnd, false);
    const id = this.symbolId(this.ruleName);
    if (this.src.slice(pos, pos + 3) !== "::=") throw syntax("expecting ::=");
    pos = this.alternates(this.space(pos + 3, true), id, true, false);
    if (this.at(pos) === "\r") pos += this.at(pos + 1) === "\n" ? 2 : 1;
    else if (this.at(pos) === "\n") pos++;
    else if (pos < this.src.length) throw syntax("expecting newline or end");
    return this.space(pos, true);
  }

  private alternates(pos: number, ruleId: number, named: boolean, nested: boolean): number {
    const items: Item[] = [];
    pos = this.sequence(pos, items, nested);
    while (this.at(pos) === "|") {
      items.push({ size: 1, refs: [] });
      pos = this.sequence(this.space(pos + 1, true), items, nested);
    }
    this.addRule(
      ruleId,
      items.flatMap((item) => item.refs),
      named,
    );
    return pos;
  }

  private sequence(pos: number, items: Item[], nested: boolean): number {
    let lastSymStart = items.length;
    let prevRules = 1;
    const repeat = (min: number, max: number | undefined): void => {
      if (items.length === lastSymStart) throw syntax("expecting preceding item to */+/?/{");
      const count = max !== undefined && max > 0 ? max : min > 0 ? min : 1;
      if (prevRules * count >= REPETITION_LIMIT)
        throw new Rejected({ kind: "repetition", rule: this.ruleName, min, max, count, pieceRules: prevRules });
      // llama.cpp counts max − min down in a uint64: a max under the min would run for ever there.
      if (max !== undefined && max < min) throw syntax("repetition with its maximum under its minimum");
      const prev = items.splice(lastSymStart);
      const prevRefs = prev.flatMap((item) => item.refs);
      const prevSize = prev.reduce((sum, item) => sum + item.size, 0);
      // The optional ones: each its own rule, holding the piece (and a reference to a generated rule, always defined).
      const optional = max === undefined ? 1 : max - min;
      for (let i = 0; i < optional; i++) {
        const id = this.generateId();
        if (i === 0) this.addRule(id, prevRefs, false);
        else this.topRule = id;
      }
      // The rule keeps the piece min times (none when min is 0), then refers to the last optional rule.
      const size = (min === 0 ? 0 : prevSize * min) + (optional > 0 ? 1 : 0);
      if (size > 0) items.push({ size, refs: min === 0 ? [] : prevRefs });
      prevRules *= count;
    };
    const push = (item: Item): void => {
      lastSymStart = items.length;
      prevRules = 1;
      if (item.size > 0) items.push(item);
    };
    while (pos < this.src.length) {
      const c = this.at(pos);
      if (c === '"') {
        pos++;
        let size = 0;
        while (this.at(pos) !== '"') {
          if (pos >= this.src.length) throw syntax("unexpected end of input");
          pos = this.char(pos);
          size++;
        }
        push({ size, refs: [] });
        pos = this.space(pos + 1, nested);
      } else if (c === "[") {
        pos++;
        if (this.at(pos) === "^") pos++;
        let size = 0;
        while (this.at(pos) !== "]") {
          if (pos >= this.src.length) throw syntax("unexpected end of input");
          pos = this.char(pos);
          size++;
          if (this.at(pos) === "-" && this.at(pos + 1) !== "]") {
            if (pos + 1 >= this.src.length) throw syntax("unexpected end of input");
            pos = this.char(pos + 1);
            size++;
          }
        }
        push({ size, refs: [] });
        pos = this.space(pos + 1, nested);
      } else if (c === "<" || c === "!") {
        pos = this.token(c === "!" ? pos + 1 : pos);
        push({ size: 1, refs: [] });
        pos = this.space(pos, nested);
      } else if (isWordChar(c)) {
        const nameEnd = this.name(pos);
        const id = this.symbolId(this.src.slice(pos, nameEnd));
        pos = this.space(nameEnd, nested);
        push({ size: 1, refs: [id] });
      } else if (c === "(") {
        pos = this.space(pos + 1, true);
        const before = this.symbolCount;
        const id = this.generateId();
        pos = this.alternates(pos, id, false, true);
        const created = Math.max(1, this.symbolCount - before);
        push({ size: 1, refs: [] });
        prevRules = created;
        if (this.at(pos) !== ")") throw syntax("expecting ')'");
        pos = this.space(pos + 1, nested);
      } else if (c === ".") {
        push({ size: 1, refs: [] });
        pos = this.space(pos + 1, nested);
      } else if (c === "*" || c === "+" || c === "?") {
        pos = this.space(pos + 1, nested);
        if (c === "*") repeat(0, undefined);
        else if (c === "+") repeat(1, undefined);
        else repeat(0, 1);
      } else if (c === "{") {
        pos = this.space(pos + 1, nested);
        if (!isDigit(this.at(pos))) throw syntax("expecting an int");
        const low = this.int(pos);
        pos = this.space(low.end, nested);
        let high: bigint | undefined;
        if (this.at(pos) === "}") {
          high = low.value;
          pos = this.space(pos + 1, nested);
        } else if (this.at(pos) === ",") {
          pos = this.space(pos + 1, nested);
          if (isDigit(this.at(pos))) {
            const read = this.int(pos);
            // UINT64_MAX is llama.cpp's "no maximum".
            if (read.value !== UINT64_MAX) high = read.value;
            pos = this.space(read.end, nested);
          }
          if (this.at(pos) !== "}") throw syntax("expecting '}'");
          pos = this.space(pos + 1, nested);
        } else throw syntax("expecting ','");
        const limit = BigInt(REPETITION_LIMIT);
        if (low.value > limit) throw new Rejected({ kind: "too-many", rule: this.ruleName, min: Number(low.value) });
        // A maximum over the limit is read as none.
        if (high !== undefined && high > limit) high = undefined;
        repeat(Number(low.value), high === undefined ? undefined : Number(high));
      } else break;
    }
    return pos;
  }
}

/** Why llama.cpp's grammar parser would reject `gbnf` (and print it to stderr), or undefined when it parses. */
export function grammarProblem(gbnf: string): GrammarProblem | undefined {
  const nul = gbnf.indexOf("\0");
  if (nul !== -1) return { kind: "nul", offset: nul };
  try {
    new Replay(gbnf).parse();
    return undefined;
  } catch (error) {
    if (error instanceof Rejected) return error.problem;
    throw error;
  }
}

/** The problem in a caller's terms, without any of the grammar's text. */
export function describeGrammarProblem(problem: GrammarProblem): string {
  switch (problem.kind) {
    case "nul":
      return "the grammar would hold the character U+0000, which llama.cpp's grammars cannot hold; leave it out of the schema";
    case "too-many":
      return `the grammar would repeat a piece at least ${problem.min} times; llama.cpp's grammar repeats a piece at most ${REPETITION_LIMIT} times`;
    case "syntax":
      return `llama.cpp cannot parse the grammar written for it (${problem.message})`;
    case "repetition":
      return repetitionLimit(problem.pieceRules, problem.count);
  }
}

/** The limit in a caller's terms. */
export const REPETITION_RULE = `llama.cpp's grammar holds a repetition only while the rules of the piece repeated times the count stays under ${REPETITION_LIMIT}`;

/** What one repetition asks for; `allowed`, when the piece may be repeated at all, says how far its count must come down. */
export function repetitionLimit(pieceRules: number, count: number, allowed = `at most ${allowedCount(pieceRules)} here`): string {
  if (allowedCount(pieceRules) === 0)
    return `the grammar would repeat a piece that holds ${pieceRules} rules (a long repetition inside another), and ${REPETITION_RULE}: lower the bound inside it`;
  return `the grammar would repeat a piece of ${pieceRules} rule${pieceRules === 1 ? "" : "s"} ${count} times, and ${REPETITION_RULE}: ${allowed}`;
}
