import { Type, type Static } from "@sinclair/typebox";
import { Nullable, problem, StringEnum } from "../../schema/builders.js";
import { compileSchema } from "../../schema/compile.js";

/** OpenAI's cap on the inputs of one embeddings request. */
export const MAX_EMBEDDING_INPUTS = 2048;

/**
 * Token-id inputs (arrays of integers) are refused: ids from another
 * tokenizer (tiktoken) would mean nothing to the specialist's model.
 */
const Input = Type.Unsafe<string | string[]>({
  type: ["string", "array"],
  minLength: 1,
  minItems: 1,
  maxItems: MAX_EMBEDDING_INPUTS,
  items: { type: "string", minLength: 1 },
  ...problem(`expected a non-empty string or an array of 1 to ${MAX_EMBEDDING_INPUTS} non-empty strings (token-id arrays are not supported).`),
});

/** POST /v1/embeddings. Fields it does not name are ignored, as OpenAI does. */
export const EmbeddingsRequestSchema = Type.Object({
  model: Type.String({ description: "alveare-<embeddings specialist id>" }),
  input: Input,
  encoding_format: Type.Optional(Nullable(StringEnum(["float", "base64"]))),
  dimensions: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 65_536 }))),
  // OpenAI's end-user id for abuse monitoring: checked as OpenAI checks it (a string), then not used.
  user: Type.Optional(Nullable(Type.String())),
});
export type EmbeddingsRequestBody = Static<typeof EmbeddingsRequestSchema>;

export const embeddingsRequest = compileSchema(EmbeddingsRequestSchema);
