import type { ToolCallDelta, ToolFunction, ToolRequest } from "../engines/tools.js";
import type { AbortSource, ChatMessage, GenerationRequest, OutputConstraint, TextDetail } from "../engines/types.js";
import type { Specialist } from "./specialist.js";

/** What a route asks of a specialist, before the specialist's defaults are applied. */
export interface SpecialistCall {
  messages: readonly ChatMessage[];
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  topP?: number | undefined;
  seed?: number | undefined;
  stop?: readonly string[] | undefined;
  /** Overrides the specialist's own output constraint (chat completions' response_format). */
  constraint?: OutputConstraint | undefined;
  onText?: ((delta: string, detail?: TextDetail) => void) | undefined;
  /** Pauses generation while the reader of `onText` is behind (a stream's client not reading). */
  whenWritable?: (() => Promise<void> | undefined) | undefined;
  /** Choices to generate (`n`). */
  choices?: number | undefined;
  /** Alternatives per token when log-probabilities are asked for. */
  topLogprobs?: number | undefined;
  /** Tools the model may call (chat completions' tools and tool_choice). */
  tools?: ToolRequest | undefined;
  /** Tools in the model's prompt that it may not call (tool_choice "none"). */
  shownTools?: readonly ToolFunction[] | undefined;
  onToolCall?: ((delta: ToolCallDelta, detail?: TextDetail) => void) | undefined;
}

/**
 * The specialist's system prompt leads the conversation. A caller's own system
 * message is kept, appended to it, so both the task and the caller's wishes hold.
 */
function withSystemPrompt(systemPrompt: string, messages: readonly ChatMessage[]): ChatMessage[] {
  // The usual request has no system message of its own: one copy, no filtering.
  if (!messages.some((m) => m.role === "system"))
    return systemPrompt.length > 0 ? [{ role: "system", content: systemPrompt }, ...messages] : [...messages];
  const callerSystem = messages.filter((m) => m.role === "system").map((m) => m.content);
  const rest = messages.filter((m) => m.role !== "system");
  const system = [systemPrompt, ...callerSystem].filter((s) => s.length > 0).join("\n\n");
  return system.length > 0 ? [{ role: "system", content: system }, ...rest] : rest;
}

/**
 * A held answer (labels, JSON) ends where its grammar does, as a tool call does: a stop string would cut a label or
 * a document and report it whole (`finish_reason` "stop" on text no parser takes, or no label). Under callable tools
 * the answer is free text, so stop strings apply there.
 */
const heldAnswer = (constraint: OutputConstraint, call: SpecialistCall): boolean => call.tools === undefined && constraint.type !== "text";

/** The engine's request for a call, aborted by `abort` (its AbortSignal made only if the engine reads `signal`). */
export function toGenerationRequest(specialist: Specialist, call: SpecialistCall, abort: AbortSource): GenerationRequest {
  const constraint = call.constraint ?? specialist.output;
  return {
    messages: withSystemPrompt(specialist.systemPrompt, call.messages),
    systemIsOperators: !call.messages.some((m) => m.role === "system"),
    constraintIsOperators: call.constraint === undefined,
    cacheScope: undefined, // the admitted account's, set at admission
    maxTokens: call.maxTokens ?? specialist.defaults.maxTokens,
    temperature: call.temperature ?? specialist.defaults.temperature,
    topP: call.topP ?? specialist.defaults.topP,
    seed: call.seed,
    stop: heldAnswer(constraint, call) ? [] : (call.stop ?? []),
    constraint,
    contextLimit: specialist.contextSize,
    get signal(): AbortSignal {
      return abort.signal;
    },
    abortWatch: abort,
    onText: call.onText,
    whenWritable: call.whenWritable,
    ...(call.choices === undefined || call.choices === 1 ? {} : { choices: call.choices }),
    ...(call.topLogprobs === undefined ? {} : { topLogprobs: call.topLogprobs }),
    ...(call.tools === undefined ? {} : { tools: call.tools, onToolCall: call.onToolCall }),
    ...(call.shownTools === undefined ? {} : { shownTools: call.shownTools }),
  };
}
