import { Type, type Static } from "@sinclair/typebox";
import { problem, StringEnum } from "../../schema/builders.js";
import { compileSchema } from "../../schema/compile.js";
import { KEY_MODES } from "../../gate/credentials.js";

/** Request bodies of the operator's API under /admin/api. */

/**
 * The longest value each string field of a dashboard or admin request may have.
 * Checked before anything else happens, so no oversized value is ever hashed,
 * looked up or remembered.
 */
export const FIELD_LIMITS = {
  email: 254,
  password: 1024,
  token: 1024,
  name: 200,
  keyName: 100,
  plan: 64,
} as const;

/**
 * C0 controls, DEL and C1 controls (U+0000–U+001F, U+007F–U+009F), the line and
 * paragraph separators and the text-direction embeddings, overrides and isolates
 * (U+2028–U+202E, U+2066–U+2069), and the characters that render as nothing but
 * would make two names differ unseen. No name or e-mail may hold one: a NUL cannot be
 * stored in PostgreSQL text, the C0/C1 ones would reach an operator's terminal
 * (ESC sequences, CR, BEL) through the CLI, and the rest can make a name shown in
 * the dashboard or a terminal read as another ("Trojan Source" reordering).
 * Lone surrogates (U+D800–U+DFFF outside a pair; a pair is one character to a
 * Unicode pattern) are no text: stored, they read back as U+FFFD.
 */
const CONTROL_RANGES =
  "\\u0000-\\u001f\\u007f-\\u009f\\u2028-\\u202e\\u2066-\\u2069\\ud800-\\udfff" +
  // Invisible ones: soft hyphen, the Arabic letter mark, the Mongolian vowel separator, zero-width space, the
  // left-to-right and right-to-left marks, the word joiner and invisible operators, the byte-order mark. The
  // zero-width joiner and non-joiner (U+200C, U+200D) stay: emoji sequences and Persian or Indic spellings need them.
  "\\u00ad\\u061c\\u180e\\u200b\\u200e\\u200f\\u2060-\\u2064\\ufeff";
export const CONTROL_CHARACTER = new RegExp(`[${CONTROL_RANGES}]`, "u");
export const CONTROL_CHARACTER_PROBLEM =
  "must not contain control characters (U+0000–U+001F, U+007F–U+009F), line-separator and text-direction characters (U+2028–U+202E, U+2066–U+2069), invisible characters (U+00AD, U+061C, U+180E, U+200B, U+200E, U+200F, U+2060–U+2064, U+FEFF) or lone surrogates (U+D800–U+DFFF, which are not text).";

/** A name field of a request: at most `maxLength` characters, none of them a control character. */
export const NameString = (maxLength: number) =>
  Type.String({ maxLength, pattern: `^[^${CONTROL_RANGES}]*$`, ...problem({ pattern: CONTROL_CHARACTER_PROBLEM }) });

// One list of modes for the schemas, the gate and the CLI.
export { KEY_MODES };
export const KeyMode = StringEnum(KEY_MODES, problem({ enum: 'must be "live" or "test".' }));

/** POST /admin/api/accounts */
export const CreateAccountSchema = Type.Object({
  name: NameString(FIELD_LIMITS.name),
  plan: Type.String({ maxLength: FIELD_LIMITS.plan }),
});

/** PATCH /admin/api/accounts/:id: at least one of the two. */
export const UpdateAccountSchema = Type.Object({
  plan: Type.Optional(Type.String({ maxLength: FIELD_LIMITS.plan })),
  status: Type.Optional(StringEnum(["active", "suspended"], problem({ enum: 'must be "active" or "suspended".' }))),
});
export type UpdateAccountBody = Static<typeof UpdateAccountSchema>;

/** POST /admin/api/accounts/:id/keys (the body may be left out: a live key without a name). */
export const CreateKeySchema = Type.Object({ mode: Type.Optional(KeyMode), name: Type.Optional(NameString(FIELD_LIMITS.keyName)) });

/** POST /admin/api/accounts/:id/invitations */
export const InviteMemberSchema = Type.Object({ email: NameString(FIELD_LIMITS.email) });

export const adminRequests = {
  createAccount: compileSchema(CreateAccountSchema),
  updateAccount: compileSchema(UpdateAccountSchema),
  createKey: compileSchema(CreateKeySchema),
  inviteMember: compileSchema(InviteMemberSchema),
};
