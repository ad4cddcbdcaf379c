import { SpecialToken, SpecialTokensText, type ChatWrapper, type LlamaText } from "node-llama-cpp";
import { StopScanner } from "../stop-scanner.js";
import { toolCallId, type ToolCall, type ToolCallDelta, type ToolRequest } from "../tools.js";

/**
 * How a chat format writes function calls, as plain text: node-llama-cpp's
 * chat wrappers know it for the templates they recognise (Llama 3.1, Qwen,
 * Mistral, Functionary, …) and fall back to the generic
 * `||call: name({"arg": …})` otherwise.
 */
export interface CallSyntax {
  prefix: string;
  paramsPrefix: string;
  /** May contain `{{functionName}}`, replaced by the called function's name. */
  suffix: string;
  /** Present when the format groups several calls in one section. */
  parallel?: { sectionPrefix: string; betweenCalls: string; sectionSuffix: string } | undefined;
}

const text = (value: string | LlamaText | undefined): string => (value === undefined ? "" : typeof value === "string" ? value : value.toString());

/**
 * Where a special-token text (`"<|im_end|>\n"`) holds its first end-of-generation token of the model, or -1.
 * Text the chat format writes with special tokens; only the model knows which of them end generation.
 */
export type EndOfGeneration = (specialText: string) => number;

/**
 * A suffix as the grammar writes it: up to its first end-of-generation token (Mistral's EOS, Qwen's
 * `<|im_end|>`, Llama 3.1's `<|eom_id|>`). llama.cpp never matches such a token against a grammar's text (it
 * allows one only once the grammar is complete), so a grammar that spelt it out would hold the model to writing
 * its letters ("EOS" for a builtin token); the model ends its turn with the token itself once the grammar is done.
 */
function suffixText(value: string | LlamaText | undefined, endOf: EndOfGeneration): string {
  if (value === undefined || typeof value === "string") return text(value);
  let out = "";
  for (const part of value.values) {
    if (part instanceof SpecialToken) break;
    if (typeof part === "string") {
      out += part;
      continue;
    }
    const end = endOf(part.value);
    if (end !== -1) return out + part.value.slice(0, end);
    out += part.value;
  }
  return out;
}

export function callSyntaxOf(wrapper: ChatWrapper, endOf: EndOfGeneration = () => -1): CallSyntax {
  const { call, parallelism } = wrapper.settings.functions;
  const p = parallelism?.call;
  return {
    prefix: text(call.prefix),
    paramsPrefix: text(call.paramsPrefix),
    suffix: suffixText(call.suffix, endOf),
    parallel:
      p === undefined
        ? undefined
        : {
            sectionPrefix: text(p.sectionPrefix),
            betweenCalls: text(p.betweenCalls ?? ""),
            sectionSuffix: suffixText(p.sectionSuffix, endOf),
          },
  };
}

/**
 * The special-token texts the call syntax holds (Mistral's "[TOOL_CALLS]"): the model writes each as one control
 * token, whose text the answer's decoder otherwise leaves out, and the call would then read as plain text.
 */
export function callSyntaxSpecialTexts(wrapper: ChatWrapper): string[] {
  const { call, parallelism } = wrapper.settings.functions;
  const p = parallelism?.call;
  return [call.prefix, call.paramsPrefix, call.suffix, p?.sectionPrefix, p?.betweenCalls, p?.sectionSuffix].flatMap((part) =>
    part === undefined || typeof part === "string" ? [] : part.values.flatMap((v) => (v instanceof SpecialTokensText ? [v.value] : [])),
  );
}

const FUNCTION_NAME = "{{functionName}}";
const suffixFor = (syntax: CallSyntax, name: string): string => syntax.suffix.split(FUNCTION_NAME).join(name);
/**
 * What every answer that calls a tool starts with. A format that groups calls in a section writes the section
 * around a single call too (Mistral's `[TOOL_CALLS][…]`, as node-llama-cpp writes and detects calls), so the
 * section holds with parallel calls off as well: it then holds one call.
 */
const callsStart = (syntax: CallSyntax): string => (syntax.parallel?.sectionPrefix ?? "") + syntax.prefix;

/** A GBNF literal. JSON's escapes are GBNF's for everything JSON.stringify emits. */
const literal = (s: string): string => JSON.stringify(s);

/** The GBNF of one JSON Schema (node-llama-cpp's), its rules renamed under `prefix` and its root's end-of-answer padding dropped. */
export function embedSchemaRules(gbnf: string, prefix: string): string {
  const lines = gbnf.split("\n").filter((l) => l.trim().length > 0);
  const names = new Set(lines.map((l) => /^([A-Za-z0-9_-]+)\s*::=/.exec(l)?.[1]).filter((n): n is string => n !== undefined));
  const renamed = lines.map((line) => renameRules(line, names, prefix));
  // node-llama-cpp ends a JSON answer with newlines it stops on; inside a call the syntax's suffix follows instead.
  return renamed.map((l) => (l.startsWith(`${prefix}root ::=`) ? l.replace(/\s*"\\n\\n\\n\\n"\s*\[\\n\]\*\s*$/, "") : l)).join("\n");
}

function renameRules(line: string, names: ReadonlySet<string>, prefix: string): string {
  let out = "";
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '"' || c === "[") {
      // Literals and character classes are copied untouched, escapes included.
      const close = c === '"' ? '"' : "]";
      let j = i + 1;
      while (j < line.length && line[j] !== close) j += line[j] === "\\" ? 2 : 1;
      out += line.slice(i, j + 1);
      i = j + 1;
    } else if (/[A-Za-z0-9_-]/.test(c)) {
      let j = i;
      while (j < line.length && /[A-Za-z0-9_-]/.test(line[j]!)) j++;
      const word = line.slice(i, j);
      out += names.has(word) ? `${prefix}${word}` : word;
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const hexClass = (s: string): string => `\\u${s.codePointAt(0)!.toString(16).padStart(4, "0")}`;

/**
 * The grammar of an answer under a tool request: one call (or, when parallel
 * calls are allowed and the format groups them, one or more), each naming a
 * function the choice allows with arguments valid for its schema; under "auto"
 * also any text that does not begin like a call.
 */
export function toolGrammar(syntax: CallSyntax, request: ToolRequest, schemaRules: ReadonlyMap<string, string>): string {
  const allowed =
    typeof request.choice === "object" ? request.tools.filter((t) => t.name === (request.choice as { name: string }).name) : request.tools;
  const rules: string[] = [];
  const alternatives = allowed.map((tool, i) => {
    rules.push(embedSchemaRules(schemaRules.get(tool.name)!, `f${i}-`));
    return `${literal(syntax.prefix)} ${literal(tool.name)} ${literal(syntax.paramsPrefix)} f${i}-root ${literal(suffixFor(syntax, tool.name))}`;
  });
  rules.push(`call ::= ${alternatives.join(" | ")}`);
  const section = syntax.parallel;
  const more = request.parallel && section !== undefined ? ` (${literal(section.betweenCalls)} call)*` : "";
  rules.push(section === undefined ? "calls ::= call" : `calls ::= ${literal(section.sectionPrefix)} call${more} ${literal(section.sectionSuffix)}`);
  if (request.choice === "auto") {
    const first = callsStart(syntax)[0];
    rules.push(first === undefined ? "free ::= .+" : `free ::= [^${hexClass(first)}] .*`);
    rules.push("root ::= (calls | free)?");
  } else {
    rules.push("root ::= calls");
  }
  return rules.join("\n");
}

/** The end of the JSON object starting at `from` (after blanks), or -1 while it is incomplete. */
function jsonObjectEnd(s: string, from: number): number {
  let depth = 0;
  let inString = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i]!;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

interface ParsedCall {
  name: string;
  /** The arguments text so far (all of it once `complete`). */
  arguments: string;
  complete: boolean;
}

/** What an answer so far says: text, calls, or not yet known (it might still become a call). */
export type ParsedAnswer = { kind: "undecided" } | { kind: "text"; content: string } | { kind: "calls"; calls: ParsedCall[] };

export function parseAnswer(output: string, syntax: CallSyntax, parallelAllowed: boolean, final: boolean): ParsedAnswer {
  const start = callsStart(syntax);
  if (!output.startsWith(start)) {
    // Only a call can begin like one (the grammar keeps text from it): a cut beginning is a call without a name yet.
    if (start.startsWith(output) && output.length > 0) return final ? { kind: "calls", calls: [] } : { kind: "undecided" };
    return !final && output.length === 0 ? { kind: "undecided" } : { kind: "text", content: output };
  }
  const parallel = parallelAllowed ? syntax.parallel : undefined;
  const calls: ParsedCall[] = [];
  let at = start.length;
  for (;;) {
    const paramsAt = output.indexOf(syntax.paramsPrefix, at);
    if (paramsAt === -1) break; // the name is still being written
    const name = output.slice(at, paramsAt);
    const argsAt = paramsAt + syntax.paramsPrefix.length;
    const end = jsonObjectEnd(output, argsAt);
    if (end === -1) {
      calls.push({ name, arguments: output.slice(argsAt).trimStart(), complete: false });
      break;
    }
    calls.push({ name, arguments: output.slice(argsAt, end).trim(), complete: true });
    const next = end + suffixFor(syntax, name).length;
    if (parallel === undefined || !output.startsWith(parallel.betweenCalls + syntax.prefix, next)) break;
    at = next + parallel.betweenCalls.length + syntax.prefix.length;
  }
  return { kind: "calls", calls };
}

/**
 * Follows an answer as its text arrives and reports what is new: content
 * text, or tool-call pieces (id and name first, then arguments text), the way
 * OpenAI streams them. Arguments are only reported once the name is whole.
 */
export class ToolAnswerTracker {
  private output = "";
  private contentSent = 0;
  /** Content as released past the caller's stop strings. */
  private content = "";
  private readonly calls: Array<{ id: string; argumentsSent: number }> = [];

  /**
   * `stop` holds the caller's stop strings: they end a text answer, and never cut the call syntax
   * (a call is whole or cut by max_tokens, so its arguments always parse).
   */
  constructor(
    private readonly syntax: CallSyntax,
    private readonly parallel: boolean,
    private readonly onText: ((delta: string) => void) | undefined,
    private readonly onToolCall: ((delta: ToolCallDelta) => void) | undefined,
    private readonly stop: StopScanner = new StopScanner([]),
  ) {}

  /** Length of the content released so far: a text answer's is a prefix of the output. */
  get contentLength(): number {
    return this.content.length;
  }

  /** Whether a stop string ended the text answer: generation stops there. */
  get stopped(): boolean {
    return this.stop.stopped;
  }

  push(piece: string): void {
    this.output += piece;
    this.report(parseAnswer(this.output, this.syntax, this.parallel, false));
  }

  /** The answer once generation has ended: its text, or its calls (a cut last call keeps its partial arguments). */
  finish(): { content: string; toolCalls: ToolCall[] } {
    const answer = parseAnswer(this.output, this.syntax, this.parallel, true);
    this.report(answer);
    if (answer.kind === "text") this.release(this.stop.flush());
    if (answer.kind !== "calls") return { content: this.content, toolCalls: [] };
    return { content: "", toolCalls: answer.calls.map((c, i) => ({ id: this.calls[i]!.id, name: c.name, arguments: c.arguments })) };
  }

  private release(text: string): void {
    if (text.length === 0) return;
    this.content += text;
    this.onText?.(text);
  }

  private report(answer: ParsedAnswer): void {
    if (answer.kind === "text") {
      if (answer.content.length > this.contentSent) this.release(this.stop.push(answer.content.slice(this.contentSent)));
      this.contentSent = answer.content.length;
      return;
    }
    if (answer.kind !== "calls") return;
    answer.calls.forEach((call, index) => {
      let state = this.calls[index];
      if (state === undefined) {
        state = { id: toolCallId(), argumentsSent: 0 };
        this.calls.push(state);
        this.onToolCall?.({ index, id: state.id, name: call.name, arguments: "" });
      }
      if (call.arguments.length > state.argumentsSent) {
        this.onToolCall?.({ index, arguments: call.arguments.slice(state.argumentsSent) });
        state.argumentsSent = call.arguments.length;
      }
    });
  }
}
