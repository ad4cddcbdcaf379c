import { Type } from "@sinclair/typebox";
import { compileSchema } from "../../schema/compile.js";
import { KeyMode } from "./admin.js";

/** Request bodies of the dashboard's own API under /dashboard/api. */

/** POST /dashboard/api/login */
export const SignInSchema = Type.Object({ email: Type.String(), password: Type.String() });

/** POST /dashboard/api/admin-login */
export const OperatorSignInSchema = Type.Object({ token: Type.String() });

/** POST /dashboard/api/invitations/accept */
export const AcceptInvitationSchema = Type.Object({ token: Type.String(), password: Type.String() });

/** POST /dashboard/api/keys. A name that is not a non-blank string is dropped rather than refused. */
export const CreateOwnKeySchema = Type.Object({ mode: KeyMode, name: Type.Optional(Type.Unknown()) });

export const dashboardRequests = {
  signIn: compileSchema(SignInSchema),
  operatorSignIn: compileSchema(OperatorSignInSchema),
  acceptInvitation: compileSchema(AcceptInvitationSchema),
  createKey: compileSchema(CreateOwnKeySchema),
};
