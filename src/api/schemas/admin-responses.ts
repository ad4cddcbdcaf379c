import { Type } from "@sinclair/typebox";
import { StringEnum } from "../../schema/builders.js";
import { KEY_MODES } from "./admin.js";

/** Response bodies of the operator's API under /admin/api (documentation and tests; nothing validates them at run time). */

const Timestamp = Type.String({ format: "date-time" });
const Count = (description?: string) => Type.Integer({ minimum: 0, ...(description === undefined ? {} : { description }) });

export const AccountSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    plan: Type.String(),
    status: StringEnum(["active", "suspended"] as const),
    created_at: Timestamp,
  },
  { title: "Account" },
);

export const AccountListSchema = Type.Object({ object: Type.Literal("list"), data: Type.Array(AccountSchema) }, { title: "AccountList" });

/** A key as listed: never the secret itself, only its first characters. */
export const ApiKeySchema = Type.Object(
  {
    id: Type.String(),
    account_id: Type.String(),
    name: Type.Union([Type.String(), Type.Null()]),
    mode: StringEnum(KEY_MODES),
    prefix: Type.String({ description: "The key's first characters, to recognise it by." }),
    created_at: Timestamp,
    last_used_at: Type.Union([Timestamp, Type.Null()]),
    revoked_at: Type.Union([Timestamp, Type.Null()]),
    created_by: Type.Union([Type.String(), Type.Null()], {
      description:
        "The member who created the key in the dashboard (revoked when they are removed), or null for the account's own keys (made by the operator).",
    }),
  },
  { title: "ApiKey" },
);

export const ApiKeyListSchema = Type.Object({ object: Type.Literal("list"), data: Type.Array(ApiKeySchema) }, { title: "ApiKeyList" });

/** POST /admin/api/accounts/{id}/keys: the only answer that ever carries the secret. */
export const CreatedApiKeySchema = Type.Composite(
  [
    ApiKeySchema,
    Type.Object({
      key: Type.String({ description: "The secret key, shown this once." }),
    }),
  ],
  { title: "CreatedApiKey" },
);

export const PlanSchema = Type.Object(
  {
    name: Type.String(),
    requests_per_window: Type.Integer({ description: "Requests per window, per API key." }),
    window_seconds: Type.Number(),
    requests_per_month: Type.Integer({ description: "Requests per UTC month, per account and mode." }),
    tokens_per_window: Type.Union([Type.Integer(), Type.Null()], { description: "Prompt + completion tokens per window, per key; null: no cap." }),
    max_concurrent_requests: Type.Union([Type.Integer(), Type.Null()], { description: "Requests in flight at once, per key; null: no cap." }),
    max_keys: Type.Integer({ description: "Unrevoked API keys per account and mode." }),
    specialists: Type.Union([Type.Literal("*"), Type.Array(Type.String())]),
  },
  { title: "Plan" },
);

export const PlanListSchema = Type.Object({ object: Type.Literal("list"), data: Type.Array(PlanSchema) }, { title: "PlanList" });

export const RevokedKeySchema = Type.Object({ id: Type.String(), revoked: Type.Literal(true) }, { title: "RevokedKey" });

export const InvitationSchema = Type.Object(
  {
    member_id: Type.String(),
    email: Type.String(),
    invite_path: Type.String({ description: "The dashboard path to send the member; the token travels in the URL fragment." }),
    url: Type.Optional(
      Type.String({
        description:
          "The whole link: ALVEARE_PUBLIC_URL followed by invite_path, or without it the scheme and host the request came to (absent for a request without a Host).",
      }),
    ),
    expires_at: Type.String({ description: "When the link stops working (7 days after it was made), ISO 8601 in UTC." }),
  },
  { title: "Invitation" },
);

export const MemberListSchema = Type.Object(
  {
    object: Type.Literal("list"),
    data: Type.Array(
      Type.Object({
        id: Type.String(),
        email: Type.String(),
        status: StringEnum(["invited", "active"] as const),
        created_at: Timestamp,
      }),
    ),
  },
  { title: "MemberList" },
);

const PerDay = Type.Record(Type.String(), Count(), { description: "Keyed by UTC day, YYYY-MM-DD." });

export const UsageBreakdownSchema = Type.Object(
  {
    period: Type.String({ pattern: "^\\d{4}-\\d{2}$" }),
    mode: StringEnum(KEY_MODES),
    daily_requests: PerDay,
    daily_tokens: PerDay,
    by_key: Type.Array(
      Type.Object({
        key_id: Type.String(),
        name: Type.Union([Type.String(), Type.Null()]),
        prefix: Type.Union([Type.String(), Type.Null()]),
        requests: Count(),
        tokens: Count(),
      }),
    ),
    by_status: Type.Object({
      success: Count(),
      client_error: Count(),
      client_closed: Count("499: the client left after admission; counts against the monthly quota"),
      rate_limited: Count(),
      server_error: Count(),
    }),
  },
  { title: "UsageBreakdown" },
);

/** One audit record; an aggregate (failed sign-ins of unknown e-mails, failed admin tokens) stands for `count` events of one source and minute. */
export const AuditRecordSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    at: Timestamp,
    actor: Type.String({ description: "operator, cli, anonymous, or member:<email>." }),
    action: Type.String(),
    account_id: Type.Union([Type.String(), Type.Null()]),
    target: Type.Union([Type.String(), Type.Null()]),
    detail: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
    source: Type.Union([Type.String(), Type.Null()], { description: "The client address." }),
    request_id: Type.Union([Type.String(), Type.Null()]),
    count: Type.Integer({ minimum: 1 }),
  },
  { title: "AuditRecord" },
);

export const AuditPageSchema = Type.Object(
  {
    object: Type.Literal("list"),
    data: Type.Array(AuditRecordSchema),
    next_cursor: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
      description: "Pass as cursor for the next (older) page; null on the last.",
    }),
  },
  { title: "AuditPage" },
);
