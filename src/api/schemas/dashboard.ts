import { Type } from "@sinclair/typebox";
import { Nullable } from "../../schema/builders.js";
import { compileSchema } from "../../schema/compile.js";
import { FIELD_LIMITS, KeyMode, NameString } from "./admin.js";

/** Request bodies of the dashboard's own API under /dashboard/api. */

/** POST /dashboard/api/login */
export const SignInSchema = Type.Object({
  email: Type.String({ maxLength: FIELD_LIMITS.email }),
  password: Type.String({ maxLength: FIELD_LIMITS.password }),
});

/** POST /dashboard/api/admin-login */
export const OperatorSignInSchema = Type.Object({ token: Type.String({ maxLength: FIELD_LIMITS.token }) });

/** POST /dashboard/api/invitations/accept */
export const AcceptInvitationSchema = Type.Object({
  token: Type.String({ maxLength: FIELD_LIMITS.token }),
  password: Type.String({ maxLength: FIELD_LIMITS.password }),
});

/** POST /dashboard/api/keys. A blank name is dropped: the page's optional field, left empty (the CLI and admin API refuse one). */
export const CreateOwnKeySchema = Type.Object({ mode: KeyMode, name: Type.Optional(Nullable(NameString(FIELD_LIMITS.keyName))) });

/** POST /dashboard/api/invitations/check */
export const CheckInvitationSchema = Type.Object({ token: Type.String({ maxLength: FIELD_LIMITS.token }) });

export const dashboardRequests = {
  checkInvitation: compileSchema(CheckInvitationSchema),
  signIn: compileSchema(SignInSchema),
  operatorSignIn: compileSchema(OperatorSignInSchema),
  acceptInvitation: compileSchema(AcceptInvitationSchema),
  createKey: compileSchema(CreateOwnKeySchema),
};
