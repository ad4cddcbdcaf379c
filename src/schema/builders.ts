import { Type, type Static, type TSchema, type TUnsafe } from "@sinclair/typebox";

/**
 * Schema keyword naming the problem to report, at this value, when it fails:
 * either one sentence for every failure of the value and its array items, or
 * one per keyword of this schema itself (`{ type: "...", minItems: "..." }`).
 * Named properties below report their own errors, and a missing property is
 * always reported as missing.
 */
export const PROBLEM = "x-problem";
export type Problem = string | Readonly<Record<string, string>>;

export const problem = (text: Problem): { [PROBLEM]: Problem } => ({ [PROBLEM]: text });

/** An optional parameter that a client may also send as null, meaning absent. */
export function Nullable<T extends TSchema>(schema: T): TUnsafe<Static<T> | null> {
  const type: unknown = schema.type;
  if (typeof type !== "string") throw new Error("Nullable needs a schema with a single type");
  // An enum lists its values, so null must be one of them too, or the type would allow null and the enum refuse it.
  const values: unknown = schema.enum;
  const nullableEnum = Array.isArray(values) ? { enum: [...(values as unknown[]), null] } : {};
  return Type.Unsafe<Static<T> | null>({ ...schema, type: [type, "null"], ...nullableEnum });
}

/** One of a few strings; a plain `enum` so the error names the allowed values. */
export function StringEnum<const V extends readonly string[]>(values: V, options: object = {}): TUnsafe<V[number]> {
  return Type.Unsafe<V[number]>({ ...options, type: "string", enum: values });
}

/**
 * Objects told apart by the string property `tag` (`{"type": "text", ...}`): the
 * error for an unknown tag lists the known ones instead of every variant's complaint.
 */
export function TaggedUnion<const T extends readonly TSchema[]>(tag: string, variants: T, options: object = {}): TUnsafe<Static<T[number]>> {
  return Type.Unsafe<Static<T[number]>>({ ...options, type: "object", discriminator: { propertyName: tag }, oneOf: variants });
}

export const NonEmptyString = (options: object = {}) => Type.String({ ...options, minLength: 1 });
