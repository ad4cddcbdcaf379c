import { Type } from "@sinclair/typebox";
import { Nullable } from "../../schema/builders.js";

/** The sampling parameters shared by both inference routes, each optional and nullable. */
export const MaxTokens = Type.Optional(
  Nullable(
    Type.Integer({
      minimum: 1,
      maximum: 4096,
      default: 512,
      description: "Most tokens to generate; 512 unless the specialist's configuration sets its own default.",
    }),
  ),
);
export const Temperature = Type.Optional(
  Nullable(
    Type.Number({
      minimum: 0,
      maximum: 2,
      default: 0.7,
      description: "Sampling temperature; 0.7 unless the specialist's configuration sets its own default.",
    }),
  ),
);
export const TopP = Type.Optional(
  Nullable(
    Type.Number({
      exclusiveMinimum: 0,
      maximum: 1,
      default: 1,
      description: "Nucleus sampling; 1 unless the specialist's configuration sets its own default.",
    }),
  ),
);
/**
 * OpenAI's range, a signed 64-bit integer: clients draw 64-bit seeds. Past 2^53 a JSON number reaches us rounded,
 * still the same number for the same seed, so a seed stays deterministic.
 */
export const Seed = Type.Optional(Nullable(Type.Integer({ minimum: -(2 ** 63), maximum: 2 ** 63 - 1 })));
