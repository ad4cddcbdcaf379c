import { MAX_REPLAYED_TOOL_CALLS, type ChatCompletionRequestBody } from "../../api/schemas/chat-completions.js";
import type { ChatMessage, Role } from "../../engines/types.js";
import type { ToolFunction, ToolRequest } from "../../engines/tools.js";
import { errors, shortened } from "../../errors.js";
import { checkJsonSchemaLimits, checkToolSchemasTotal, type SchemaSize } from "../json-schema-limits.js";

type Body = ChatCompletionRequestBody;
type BodyMessage = Body["messages"][number];

/** Keyed by client input, so a Map: `constructor` or `__proto__` must not find anything. */
const ROLES: ReadonlyMap<BodyMessage["role"], Role | "tool"> = new Map([
  ["system", "system"],
  ["developer", "system"],
  ["user", "user"],
  ["assistant", "assistant"],
  ["tool", "tool"],
]);

/** A refusal part is what the assistant said, so it is its text in the prompt. */
const textOf = (content: NonNullable<BodyMessage["content"]>): string =>
  typeof content === "string" ? content : content.map((part) => (part.type === "text" ? part.text : part.refusal)).join("\n");

/** Refusals are the assistant's alone, as OpenAI has them. */
function checkRefusals(m: BodyMessage, role: Role | "tool", i: number): void {
  if (role === "assistant") return;
  if (m.refusal !== undefined && m.refusal !== null)
    throw errors.invalidParameter(`messages[${i}].refusal`, "only assistant messages carry a refusal.");
  if (!Array.isArray(m.content)) return;
  const j = m.content.findIndex((part) => part.type === "refusal");
  if (j >= 0) throw errors.invalidParameter(`messages[${i}].content[${j}]`, "only parts of type 'text' are supported.");
}

/** A turn's calls that no `tool` message has answered yet, and where that turn is. */
interface Unanswered {
  turn: number;
  ids: Set<string>;
}

/** OpenAI refuses a history that leaves a call unanswered: the model would read a call without its result. */
function checkAnswered(unanswered: Unanswered): void {
  const [id] = unanswered.ids;
  if (id === undefined) return;
  throw errors.invalidParameter(
    `messages[${unanswered.turn}].tool_calls`,
    `an assistant message with 'tool_calls' must be followed by 'tool' messages answering each call; none answers '${shortened(id)}'.`,
  );
}

/**
 * The history in the engine's terms. Tool turns follow OpenAI's rules: only an
 * assistant turn carries tool calls (and may then have no content), a `tool`
 * message answers a call of the assistant turn before it, and every call is
 * answered before the next message that is not a `tool` message.
 */
export function toChatMessages(messages: Body["messages"]): ChatMessage[] {
  let openCalls = new Set<string>();
  let unanswered: Unanswered = { turn: 0, ids: new Set() };
  let replayed = 0;
  const history = messages.map((m, i) => {
    const role = ROLES.get(m.role) ?? "user";
    if (role !== "tool") checkAnswered(unanswered);
    const calls = m.tool_calls ?? [];
    replayed += calls.length;
    if (replayed > MAX_REPLAYED_TOOL_CALLS)
      throw errors.invalidParameter(`messages[${i}].tool_calls`, `a conversation may replay at most ${MAX_REPLAYED_TOOL_CALLS} tool calls in all.`);
    if (calls.length > 0 && role !== "assistant")
      throw errors.invalidParameter(`messages[${i}].tool_calls`, "only assistant messages carry tool calls.");
    checkRefusals(m, role, i);
    const refusal = m.refusal ?? undefined;
    if ((m.content === undefined || m.content === null) && !(role === "assistant" && (calls.length > 0 || refusal !== undefined)))
      throw errors.missingParameter(`messages[${i}].content`);
    const message: ChatMessage = { role, content: m.content === undefined || m.content === null ? (refusal ?? "") : textOf(m.content) };
    if (role === "assistant") {
      openCalls = new Set(calls.map((c) => c.id));
      unanswered = { turn: i, ids: new Set(openCalls) };
      if (calls.length > 0) message.toolCalls = calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments }));
    } else if (role === "tool") {
      const id = m.tool_call_id;
      if (id === undefined || id === null) throw errors.missingParameter(`messages[${i}].tool_call_id`);
      if (!openCalls.has(id)) {
        throw errors.invalidParameter(`messages[${i}].tool_call_id`, "a 'tool' message must answer a tool call of the assistant message before it.");
      }
      message.toolCallId = id;
      unanswered.ids.delete(id);
    } else {
      openCalls = new Set();
    }
    return message;
  });
  checkAnswered(unanswered);
  return history;
}

const EMPTY_PARAMETERS = { type: "object", properties: {} } as const;

/**
 * A function's arguments are an object: `{}` (OpenAI's FunctionParameters is any
 * object, and clients send it for functions without arguments) means none, and a
 * schema that names `properties` but leaves out `type` is an object schema.
 */
function argumentsSchema(parameters: Readonly<Record<string, unknown>> | null | undefined): Readonly<Record<string, unknown>> {
  if (parameters === undefined || parameters === null || Object.keys(parameters).length === 0) return EMPTY_PARAMETERS;
  if (parameters.type === undefined && typeof parameters.properties === "object" && parameters.properties !== null) {
    return { ...parameters, type: "object" };
  }
  return parameters;
}

/** The tool in the engine's terms, and its schema's size toward the tools' total. */
function toToolFunction(tool: NonNullable<Body["tools"]>[number], i: number): { tool: ToolFunction; size: SchemaSize } {
  const param = `tools[${i}].function.parameters`;
  const parameters = argumentsSchema(tool.function.parameters);
  if (parameters.type !== "object") throw errors.invalidParameter(param, "must be a JSON Schema of type 'object'.");
  const size = checkJsonSchemaLimits(parameters, param);
  const strict = tool.function.strict ?? undefined;
  return { tool: { name: tool.function.name, description: tool.function.description ?? undefined, parameters, strict }, size };
}

/**
 * A request's tools: those the model may call (absent when it is to answer in text), and under tool_choice "none"
 * those it is only shown. OpenAI's "none" keeps the tools in the model's prompt and only forbids a call, so the
 * model still knows what it was offered (vLLM and llama-server do the same).
 */
export interface ParsedTools {
  callable: ToolRequest | undefined;
  shown: readonly ToolFunction[] | undefined;
}

const NO_TOOLS: ParsedTools = { callable: undefined, shown: undefined };

export function parseToolRequest(o: Body): ParsedTools {
  const tools = o.tools ?? undefined;
  const choice = o.tool_choice ?? undefined;
  if (tools === undefined) {
    if (choice !== undefined) throw errors.invalidParameter("tool_choice", "is only allowed when 'tools' are given.");
    if (o.parallel_tool_calls !== undefined && o.parallel_tool_calls !== null) {
      throw errors.invalidParameter("parallel_tool_calls", "is only allowed when 'tools' are given.");
    }
    return NO_TOOLS;
  }
  if (tools.length === 0) throw errors.invalidParameter("tools", "must hold at least one tool.");
  const seen = new Set<string>();
  const checked = tools.map((tool, i) => {
    if (seen.has(tool.function.name))
      throw errors.invalidParameter(`tools[${i}].function.name`, `another tool is already named '${tool.function.name}'.`);
    seen.add(tool.function.name);
    return toToolFunction(tool, i);
  });
  checkToolSchemasTotal(
    checked.map((c) => c.size),
    "tools",
  );
  let functions = checked.map((c) => c.tool);
  if (typeof choice === "object" && choice.type === "function" && !seen.has(choice.function.name)) {
    throw errors.invalidParameter("tool_choice", `there is no tool named '${choice.function.name}' in 'tools'.`);
  }
  if (choice === "none") return { callable: undefined, shown: functions };
  if (o.response_format !== undefined && o.response_format !== null && o.response_format.type !== "text") {
    throw errors.invalidParameter("response_format", "cannot be combined with 'tools' (unless tool_choice is \"none\").");
  }
  if (typeof choice === "object" && choice.type === "allowed_tools") {
    // The model is offered only the tools listed, under their mode: what OpenAI's allowed_tools means.
    const allowed = new Set<string>();
    choice.allowed_tools.tools.forEach((tool, i) => {
      const name = tool.function.name;
      if (!seen.has(name))
        throw errors.invalidParameter(`tool_choice.allowed_tools.tools[${i}].function.name`, `there is no tool named '${name}' in 'tools'.`);
      allowed.add(name);
    });
    functions = functions.filter((tool) => allowed.has(tool.name));
    return { callable: { tools: functions, choice: choice.allowed_tools.mode, parallel: o.parallel_tool_calls ?? true }, shown: undefined };
  }
  return {
    callable: {
      tools: functions,
      choice: typeof choice === "object" ? { name: choice.function.name } : (choice ?? "auto"),
      parallel: o.parallel_tool_calls ?? true,
    },
    shown: undefined,
  };
}
