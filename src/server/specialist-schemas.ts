import { ConfigError } from "../config/config-error.js";
import { enforceableSchemaGbnf } from "../engines/embedded/grammars.js";
import { ApiError } from "../errors.js";
import type { SpecialistDefinition } from "../specialists/specialist.js";
import { checkJsonSchemaLimits } from "./json-schema-limits.js";

/** The parameter the request checks name; replaced by the config field in start-up messages. */
const PARAM = "output.schema";

/**
 * A specialist's `json_schema` output is checked as a request's `response_format` schema is, but at
 * start-up, before any model loads: served as written, a schema that is no JSON Schema (or that an
 * embedded engine's grammar cannot hold) failed every request to the specialist with a 400 blaming
 * the caller's `response_format`, which the caller never sent.
 */
export async function checkSpecialistSchemas(specialists: readonly SpecialistDefinition[]): Promise<void> {
  for (const { id, output, engine } of specialists) {
    if (output.type !== "json_schema") continue;
    try {
      checkJsonSchemaLimits(output.schema, PARAM);
      if (engine.kind === "embedded") await enforceableSchemaGbnf(output.schema, PARAM);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      throw new ConfigError(`specialists.${id}.output.schema`, error.message.replace(`Invalid '${PARAM}': `, ""));
    }
  }
}
