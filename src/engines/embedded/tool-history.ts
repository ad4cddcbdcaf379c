import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions, ChatModelResponse, GbnfJsonSchema, LlamaGrammar } from "node-llama-cpp";
import type { ChatMessage } from "../types.js";
import type { ToolFunction, ToolRequest } from "../tools.js";
import { documentedSchemaOf, type GrammarCache } from "./grammars.js";
import { toolGrammar, type CallSyntax } from "./tool-calls.js";

/**
 * The tools as node-llama-cpp documents them in the prompt (its chat wrapper
 * decides how): each schema as the grammar holds it (references resolved,
 * alternatives as `oneOf`), hints the grammar does not hold (a `format: email`) kept.
 */
export function toolFunctions(tools: readonly ToolFunction[]): ChatModelFunctions {
  const functions: Record<string, ChatModelFunctions[string]> = Object.create(null) as Record<string, ChatModelFunctions[string]>;
  for (const tool of tools) {
    functions[tool.name] = {
      ...(tool.description === undefined ? {} : { description: tool.description }),
      params: documentedSchemaOf(tool.parameters) as GbnfJsonSchema,
    };
  }
  return functions;
}

/**
 * Arguments nested deeper than this are shown as the text they came as: node-llama-cpp writes a parsed value
 * back into the prompt recursively, so 5,000 levels overflowed the call stack (a 500) and 3,500 took a second.
 * A model's calls nest a few levels.
 */
const MAX_ARGUMENT_DEPTH = 64;

/**
 * JSON values a request's replayed arguments may hold, all calls together, before the rest are shown as the text
 * they came as. Parsing and writing them back costs ~2.6 µs a value (node-llama-cpp's writer, then the garbage):
 * one megabyte of `[{},{},…]` (330,000 values) held the event loop 0.8 s; this bound keeps it near 50 ms, and a
 * prompt holding more would not fit a small model's context anyway.
 */
export const MAX_REPLAYED_VALUES = 20_000;

/** How deep the JSON text nests objects and lists, and about how many values it holds (brackets and commas inside strings are text). */
function jsonShape(text: string): { depth: number; values: number } {
  let depth = 0;
  let deepest = 0;
  let values = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      deepest = Math.max(deepest, ++depth);
      values++;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c) values++;
  }
  return { depth: deepest, values };
}

/** Parses replayed arguments within what is left of the request's `budget` of values; past it, or unparsable, the text as given. */
function parseArguments(text: string, budget: { values: number }): unknown {
  const shape = jsonShape(text);
  if (shape.depth > MAX_ARGUMENT_DEPTH || shape.values > budget.values) return text;
  try {
    const parsed: unknown = JSON.parse(text);
    budget.values -= shape.values;
    return parsed;
  } catch {
    // A client may replay arguments it edited by hand: shown as given.
    return text;
  }
}

/**
 * Chat messages as node-llama-cpp's history: an assistant turn's tool calls
 * become function-call segments carrying the results the following `tool`
 * messages give, so the chat wrapper renders calls and results in the model's
 * own format; an assistant answer after tool results continues that turn.
 */
export function toHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const pending = new Map<string, ChatModelFunctionCall>();
  const budget = { values: MAX_REPLAYED_VALUES };
  let afterResults = false;
  for (const m of messages) {
    const last = history.at(-1);
    if (m.role === "tool") {
      const call = m.toolCallId === undefined ? undefined : pending.get(m.toolCallId);
      if (call !== undefined) call.result = m.content;
      afterResults = true;
      continue;
    }
    if (m.role === "system") history.push({ type: "system", text: m.content });
    else if (m.role === "user") history.push({ type: "user", text: m.content });
    else {
      const response: ChatModelResponse["response"] = m.content.length > 0 ? [m.content] : [];
      for (const call of m.toolCalls ?? []) {
        const segment: ChatModelFunctionCall = {
          type: "functionCall",
          name: call.name,
          params: parseArguments(call.arguments, budget),
          result: null,
        };
        pending.set(call.id, segment);
        response.push(segment);
      }
      if (afterResults && last?.type === "model") last.response.push(...response);
      else history.push({ type: "model", response });
    }
    afterResults = false;
  }
  return history;
}

/**
 * Each tool's arguments schema as the grammar holds it, by name: a schema it cannot hold is refused (400) here,
 * before node-llama-cpp documents the tools with it, whether the model may call them or is only shown them.
 */
export async function toolSchemaRules(grammars: GrammarCache, tools: readonly ToolFunction[]): Promise<Map<string, string>> {
  const rules = new Map<string, string>();
  for (const [i, tool] of tools.entries()) {
    rules.set(tool.name, await grammars.jsonSchemaGbnf(tool.parameters, `tools[${i}].function.parameters`));
  }
  return rules;
}

/** The grammar of an answer to a tool request, every function's arguments held to its schema. */
/** `scope`: whose cached grammar it may reuse (the caller's tools are their own: see GrammarCache). */
export async function toolGrammarFor(grammars: GrammarCache, syntax: CallSyntax, request: ToolRequest, scope?: string): Promise<LlamaGrammar> {
  return grammars.fromText(toolGrammar(syntax, request, await toolSchemaRules(grammars, request.tools)), scope);
}
