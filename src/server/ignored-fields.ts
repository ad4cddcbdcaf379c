import type { FastifyReply, FastifyRequest } from "fastify";
import type { CompiledSchema } from "../schema/compile.js";

/** The response header that names the request's top-level fields the route does not read. */
export const IGNORED_FIELDS_HEADER = "alveare-ignored-fields";
/** At most this many names, each as plain as a header carries unquoted; the rest are counted. */
const MAX_NAMED = 8;
const PLAIN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Fields a route does not know are ignored (as the API promises, for clients that send other servers' parameters),
 * but not silently: `"max_token": 5` was answered with 512 tokens, billed, and nothing said. Their names go into a
 * response header (seen with curl -i, or a client's debug log) and the request's log line. Returns the check for a
 * body that passed `schema`, whose properties are the fields the route knows.
 */
export function ignoredFieldsOf(schema: CompiledSchema<unknown>): (request: FastifyRequest, reply: FastifyReply) => void {
  const known = new Set(Object.keys((schema.schema as { properties?: Record<string, unknown> }).properties ?? {}));
  return (request, reply) => {
    const body = request.body as Record<string, unknown>;
    let named: string[] | undefined;
    let others = 0;
    for (const name in body) {
      if (known.has(name)) continue;
      if (PLAIN_NAME.test(name) && (named?.length ?? 0) < MAX_NAMED) (named ??= []).push(name);
      else others++;
    }
    if (named === undefined && others === 0) return;
    const said = [...(named ?? []), ...(others === 0 ? [] : [`${others} more`])].join(", ");
    reply.header(IGNORED_FIELDS_HEADER, said);
    request.logFields.ignored_fields = said;
  };
}
