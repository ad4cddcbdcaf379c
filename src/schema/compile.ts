import type { Static, TSchema } from "@sinclair/typebox";
import { Ajv2020, type ErrorObject } from "ajv/dist/2020.js";
import { PROBLEM } from "./builders.js";

/**
 * The one Ajv instance behind every request and config-file schema. It checks
 * and never repairs: no type coercion (`"5"` is not 5), no defaults filled in,
 * no properties removed, and it stops at the first error, which is all a
 * client's 400 names.
 */
const ajv = new Ajv2020({
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  allErrors: false,
  strict: true,
  // `["integer", "null"]` is how an optional parameter that may be null is written.
  allowUnionTypes: true,
  discriminator: true,
});
ajv.addKeyword({ keyword: PROBLEM, schemaType: ["string", "object"] });

export type Checked<T> = { ok: true; value: T } | { ok: false; error: ErrorObject };

export interface CompiledSchema<T> {
  schema: TSchema;
  /** `data` as T, or the first place where it does not match. */
  check(data: unknown): Checked<T>;
}

export function compileSchema<S extends TSchema>(schema: S): CompiledSchema<Static<S>> {
  const validate = ajv.compile<Static<S>>(schema);
  return {
    schema,
    check(data) {
      if (validate(data)) return { ok: true, value: data };
      const error = validate.errors?.[0];
      if (error === undefined) throw new Error("Ajv reported a failure without an error");
      return { ok: false, error };
    },
  };
}
