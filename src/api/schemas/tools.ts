import { Type, type Static } from "@sinclair/typebox";
import { Nullable, problem, StringEnum, TaggedUnion } from "../../schema/builders.js";

/** OpenAI's own caps: 128 tools, names of up to 64 letters, digits, '_' or '-'. */
export const MAX_TOOLS = 128;
export const TOOL_NAME_PATTERN = "^[A-Za-z0-9_-]{1,64}$";

const FunctionName = Type.String({ pattern: TOOL_NAME_PATTERN, ...problem("must be 1 to 64 letters, digits, '_' or '-'.") });

/** `parameters` is the client's JSON Schema: opaque here, checked where tools are parsed and compiled. */
const FunctionTool = Type.Object({
  type: Type.Literal("function"),
  function: Type.Object(
    {
      name: FunctionName,
      description: Type.Optional(Nullable(Type.String())),
      parameters: Type.Optional(Nullable(Type.Object({}))),
      strict: Type.Optional(Nullable(Type.Boolean())),
    },
    problem({ type: "expected a function object." }),
  ),
});

export const Tools = Type.Optional(
  Nullable(
    Type.Array(TaggedUnion("type", [FunctionTool], problem("only tools of type 'function' are supported.")), {
      maxItems: MAX_TOOLS,
      ...problem({ type: "expected an array of tools.", maxItems: `must hold at most ${MAX_TOOLS} tools.` }),
    }),
  ),
);

const TOOL_CHOICE_RULE =
  'expected "none", "auto", "required", {"type": "function", "function": {"name": …}} or ' +
  '{"type": "allowed_tools", "allowed_tools": {"mode": "auto" or "required", "tools": [{"type": "function", "function": {"name": …}}, …]}}.';

const NamedChoice = Type.Object(
  { type: Type.Literal("function"), function: Type.Object({ name: FunctionName }) },
  problem({ type: TOOL_CHOICE_RULE }),
);

/** OpenAI's allowed_tools choice: the model may call only the tools listed (all of `tools` stay in the request), under `mode`. */
const AllowedToolsChoice = Type.Object(
  {
    type: Type.Literal("allowed_tools"),
    allowed_tools: Type.Object({
      mode: StringEnum(["auto", "required"]),
      tools: Type.Array(Type.Object({ type: Type.Literal("function"), function: Type.Object({ name: FunctionName }) }), {
        minItems: 1,
        maxItems: MAX_TOOLS,
      }),
    }),
  },
  problem({ type: TOOL_CHOICE_RULE }),
);

export type AllowedToolsChoiceBody = Static<typeof AllowedToolsChoice>;

export const ToolChoice = Type.Optional(
  Type.Unsafe<"none" | "auto" | "required" | { type: "function"; function: { name: string } } | AllowedToolsChoiceBody | null>({
    anyOf: [StringEnum(["none", "auto", "required"]), NamedChoice, AllowedToolsChoice, Type.Null()],
    ...problem(TOOL_CHOICE_RULE),
  }),
);

export const ParallelToolCalls = Type.Optional(Nullable(Type.Boolean()));

/** An assistant turn's call, as clients replay it in the history. */
export const MessageToolCall = Type.Object({
  id: Type.String({ minLength: 1 }),
  type: Type.Literal("function"),
  function: Type.Object({ name: Type.String(), arguments: Type.String() }),
});
