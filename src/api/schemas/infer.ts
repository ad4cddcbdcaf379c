import { Type, type Static } from "@sinclair/typebox";
import { NonEmptyString } from "../../schema/builders.js";
import { compileSchema } from "../../schema/compile.js";
import { MaxTokens, Seed, Temperature, TopP } from "./sampling.js";

/** POST /v1/infer */
export const InferRequestSchema = Type.Object({
  specialist: Type.String({ description: "A specialist id from GET /v1/models, without the alveare- prefix." }),
  prompt: NonEmptyString(),
  max_tokens: MaxTokens,
  temperature: Temperature,
  top_p: TopP,
  seed: Seed,
});
export type InferRequestBody = Static<typeof InferRequestSchema>;

export const inferRequest = compileSchema(InferRequestSchema);
