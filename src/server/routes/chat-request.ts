import type { ChatMessage, OutputConstraint, Role } from "../../engines/types.js";
import { errors } from "../../errors.js";
import {
  bodyObject, field, isObject, optionalBoolean, optionalNumber, optionalObject, preview, requiredString, SAMPLING, type JsonObject,
} from "../validate.js";
import { checkJsonSchemaLimits } from "../json-schema-limits.js";

/** A validated chat completion request in the terms the specialist layer uses. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  topP?: number | undefined;
  seed?: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  constraint?: OutputConstraint | undefined;
}

// A Map, not an object literal: a role named "constructor" or "__proto__" must not find anything.
const ROLES: ReadonlyMap<string, Role> = new Map([["system", "system"], ["developer", "system"], ["user", "user"], ["assistant", "assistant"]]);

function parseContent(value: unknown, param: string): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) throw errors.invalidParameter(param, "expected a string or an array of text parts.");
  return value
    .map((part: unknown, i) => {
      const p = `${param}[${i}]`;
      if (!isObject(part) || part.type !== "text") throw errors.invalidParameter(p, "only parts of type 'text' are supported.");
      return requiredString(part, "text", `${p}.text`);
    })
    .join("\n");
}

function parseMessages(o: JsonObject): ChatMessage[] {
  const raw = field(o, "messages");
  if (raw === undefined || raw === null) throw errors.missingParameter("messages");
  if (!Array.isArray(raw)) throw errors.invalidParameter("messages", "expected an array of message objects.");
  if (raw.length === 0) throw errors.invalidParameter("messages", "must contain at least one message.");
  return raw.map((m: unknown, i): ChatMessage => {
    const p = `messages[${i}]`;
    if (!isObject(m)) throw errors.invalidParameter(p, "expected a message object.");
    const roleName = requiredString(m, "role", `${p}.role`);
    const role = ROLES.get(roleName);
    if (role === undefined) throw errors.invalidParameter(`${p}.role`, `must be "system", "user" or "assistant", got ${preview(roleName)}.`);
    const content = field(m, "content");
    if (content === undefined || content === null) throw errors.missingParameter(`${p}.content`);
    return { role, content: parseContent(content, `${p}.content`) };
  });
}

function parseStop(o: JsonObject): string[] {
  const v = field(o, "stop");
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === "string" && s.length > 0)) {
    throw errors.invalidParameter("stop", "expected a non-empty string or an array of up to 4 non-empty strings.");
  }
  return list as string[];
}

function parseResponseFormat(o: JsonObject): OutputConstraint | undefined {
  const rf = optionalObject(o, "response_format");
  if (rf === undefined) return undefined;
  switch (rf.type) {
    case "text":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const js = optionalObject(rf, "json_schema", "response_format.json_schema");
      if (js === undefined) throw errors.missingParameter("response_format.json_schema");
      const schema = optionalObject(js, "schema", "response_format.json_schema.schema");
      if (schema === undefined) throw errors.missingParameter("response_format.json_schema.schema");
      checkJsonSchemaLimits(schema, "response_format.json_schema.schema");
      return { type: "json_schema", schema };
    }
    default:
      throw errors.invalidParameter("response_format.type", 'must be "text", "json_object" or "json_schema".');
  }
}

export function parseChatRequest(body: unknown): ChatRequest {
  const o = bodyObject(body);
  const model = requiredString(o, "model");
  const messages = parseMessages(o);
  // Only one choice per request is served: n other than 1 is refused, not silently ignored.
  optionalNumber(o, "n", { min: 1, max: 1, integer: true });
  const maxTokens = optionalNumber(o, "max_tokens", SAMPLING.maxTokens) ?? optionalNumber(o, "max_completion_tokens", SAMPLING.maxTokens);
  const streamOptions = optionalObject(o, "stream_options");
  return {
    model,
    messages,
    maxTokens,
    temperature: optionalNumber(o, "temperature", SAMPLING.temperature),
    topP: optionalNumber(o, "top_p", SAMPLING.topP),
    seed: optionalNumber(o, "seed", SAMPLING.seed),
    stop: parseStop(o),
    stream: optionalBoolean(o, "stream") ?? false,
    includeUsage: (streamOptions && optionalBoolean(streamOptions, "include_usage", "stream_options.include_usage")) ?? false,
    constraint: parseResponseFormat(o),
  };
}

