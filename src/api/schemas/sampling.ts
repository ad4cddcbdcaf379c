import { Type } from "@sinclair/typebox";
import { Nullable } from "../../schema/builders.js";

/** The sampling parameters shared by both inference routes, each optional and nullable. */
export const MaxTokens = Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 4096, description: "Most tokens to generate." })));
export const Temperature = Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 })));
export const TopP = Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 })));
export const Seed = Type.Optional(Nullable(Type.Integer({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER })));
