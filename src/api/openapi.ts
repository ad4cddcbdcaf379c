import type { TSchema } from "@sinclair/typebox";
import { ChatCompletionRequestSchema } from "./schemas/chat-completions.js";
import { EmbeddingsRequestSchema } from "./schemas/embeddings.js";
import { InferRequestSchema } from "./schemas/infer.js";
import { CreateAccountSchema, CreateKeySchema, InviteMemberSchema, UpdateAccountSchema } from "./schemas/admin.js";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  CreateEmbeddingResponseSchema,
  ErrorBodySchema,
  HealthSchema,
  InferResponseSchema,
  ModelListSchema,
  ModelSchema,
  ReadinessSchema,
  UsageSchema,
} from "./schemas/responses.js";
import {
  AccountListSchema,
  AccountSchema,
  ApiKeyListSchema,
  AuditPageSchema,
  PlanListSchema,
  AuditRecordSchema,
  CreatedApiKeySchema,
  InvitationSchema,
  MemberListSchema,
  RevokedKeySchema,
  UsageBreakdownSchema,
} from "./schemas/admin-responses.js";

/**
 * The OpenAPI 3.1 description of the public API, the admin API and the probes,
 * built from the TypeBox schemas that validate the requests and describe the
 * responses, so the document cannot drift from what the server checks.
 */

const SCHEMAS = {
  Error: ErrorBodySchema,
  Health: HealthSchema,
  Readiness: ReadinessSchema,
  Model: ModelSchema,
  ModelList: ModelListSchema,
  InferRequest: InferRequestSchema,
  InferResponse: InferResponseSchema,
  ChatCompletionRequest: ChatCompletionRequestSchema,
  ChatCompletion: ChatCompletionSchema,
  ChatCompletionChunk: ChatCompletionChunkSchema,
  EmbeddingsRequest: EmbeddingsRequestSchema,
  CreateEmbeddingResponse: CreateEmbeddingResponseSchema,
  Usage: UsageSchema,
  Account: AccountSchema,
  AccountList: AccountListSchema,
  CreateAccountRequest: CreateAccountSchema,
  UpdateAccountRequest: UpdateAccountSchema,
  ApiKey: CreatedApiKeySchema,
  ApiKeyList: ApiKeyListSchema,
  CreateKeyRequest: CreateKeySchema,
  RevokedKey: RevokedKeySchema,
  InviteMemberRequest: InviteMemberSchema,
  Invitation: InvitationSchema,
  MemberList: MemberListSchema,
  UsageBreakdown: UsageBreakdownSchema,
  AuditRecord: AuditRecordSchema,
  AuditPage: AuditPageSchema,
  PlanList: PlanListSchema,
} as const satisfies Record<string, TSchema>;

export type SchemaName = keyof typeof SCHEMAS;

const ref = (name: SchemaName) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: SchemaName) => ({ "application/json": { schema: ref(name) } });

/** Every error status the server answers, with the catalogue codes each one carries. */
const ERROR_STATUSES = {
  400: "Invalid request: invalid_json, missing_parameter, invalid_parameter, model_not_found, context_length_exceeded, invalid_request (also a malformed URL).",
  401: "Authentication failed: missing_api_key, invalid_api_key, revoked_api_key (missing_admin_token, invalid_admin_token on the admin API).",
  403: "Not allowed: account_suspended, specialist_not_in_plan (key_limit_reached and csrf_failed on the admin API).",
  404: "not_found: no such route or resource (the whole admin API answers 404 while no admin token is configured).",
  408: "request_timeout: the request was not received in full in time.",
  413: "request_too_large: the body is larger than the configured limit.",
  429: "Too many requests: rate_limit_exceeded, token_rate_limit_exceeded, concurrency_limit_exceeded, monthly_quota_exceeded (too_many_sign_in_attempts on the admin API). Retry-After says when to retry.",
  431: "request_header_fields_too_large: the headers are larger than the server accepts.",
  500: "internal_error: the server failed; retry with backoff.",
  502: "upstream_error: a remote specialist's upstream answered badly.",
  503: "overloaded (the engine's queue is full; Retry-After says when to retry), upstream_error (no healthy upstream) or dependency_unavailable (Redis or PostgreSQL unreachable; Retry-After).",
  504: "upstream_error: a remote specialist's upstream did not answer in time.",
} as const;
export type ErrorStatus = keyof typeof ERROR_STATUSES;

const RETRY_AFTER = { description: "Seconds to wait before retrying.", schema: { type: "integer", minimum: 1 } };
const REQUEST_ID = { description: "The request's id, also in the server's log line (echoes a valid X-Request-Id).", schema: { type: "string" } };

function errorResponse(status: ErrorStatus) {
  const retries = status === 429 || status === 503;
  return {
    description: ERROR_STATUSES[status],
    headers: { "X-Request-Id": REQUEST_ID, ...(retries ? { "Retry-After": RETRY_AFTER } : {}) },
    content: json("Error"),
  };
}

/** What may go wrong before any route runs: a slow or oversized request, or a server fault. */
const ANY_ROUTE: readonly ErrorStatus[] = [408, 431, 500];
const WITH_BODY: readonly ErrorStatus[] = [400, 413];
const V1_AUTH: readonly ErrorStatus[] = [401, 403];
const INFERENCE: readonly ErrorStatus[] = [...WITH_BODY, ...V1_AUTH, 429, 502, 503, 504];
/** The admin API: 404 also when it is switched off, 429 after too many wrong tokens, 403 for a cookie without its CSRF token. */
const ADMIN: readonly ErrorStatus[] = [401, 403, 404, 429];

type Security = "public" | "apiKey" | "admin";

interface Operation {
  method: "get" | "post" | "patch" | "delete";
  /** The route as Fastify registers it (`:id` for a path parameter). */
  path: string;
  summary: string;
  tag: "Inference" | "Account" | "Operations" | "Admin";
  security: Security;
  body?: SchemaName;
  /** Body optional (POST /admin/api/accounts/:id/keys takes none for a live key without a name). */
  bodyOptional?: boolean;
  query?: ReadonlyArray<{ name: string; description: string; schema: object }>;
  /** Success statuses with their body (none for a 204). */
  ok: Readonly<Record<number, { description: string; content?: Record<string, unknown> }>>;
  errors: readonly ErrorStatus[];
}

const MODE_QUERY = { name: "mode", description: "Which keys' traffic: live (default) or test.", schema: { type: "string", enum: ["live", "test"] } };
const ok = (description: string, name: SchemaName) => ({ description, content: json(name) });

export const OPERATIONS: readonly Operation[] = [
  {
    method: "get",
    path: "/health",
    summary: "Liveness: the process is up.",
    tag: "Operations",
    security: "public",
    ok: { 200: ok("Alive.", "Health") },
    errors: [],
  },
  {
    method: "get",
    path: "/ready",
    summary: "Readiness: every engine loaded, every upstream pool has a healthy member, the database answers.",
    tag: "Operations",
    security: "public",
    ok: { 200: ok("Ready to take work.", "Readiness") },
    errors: [],
  },
  {
    method: "get",
    path: "/openapi.json",
    summary: "This document.",
    tag: "Operations",
    security: "public",
    ok: { 200: { description: "The OpenAPI 3.1 document.", content: { "application/json": { schema: { type: "object" } } } } },
    errors: [],
  },
  {
    method: "get",
    path: "/docs",
    summary: "This document, rendered for people.",
    tag: "Operations",
    security: "public",
    ok: { 200: { description: "An HTML page.", content: { "text/html": { schema: { type: "string" } } } } },
    errors: [],
  },
  {
    method: "get",
    path: "/",
    summary: "The server's own address: a browser (asking for HTML) is sent to the dashboard; an API client gets 404.",
    tag: "Operations",
    security: "public",
    ok: { 302: { description: "To the dashboard (Location: /dashboard/)." } },
    errors: [404],
  },
  {
    method: "get",
    path: "/v1/models",
    summary: "The specialists this key may call, as OpenAI models.",
    tag: "Inference",
    security: "apiKey",
    ok: { 200: ok("The models.", "ModelList") },
    errors: V1_AUTH,
  },
  {
    method: "get",
    path: "/v1/models/:model",
    summary: "One model of the list, by its id (alveare-<specialist id>); 404 for one the list does not show.",
    tag: "Inference",
    security: "apiKey",
    ok: { 200: ok("The model.", "Model") },
    errors: [...V1_AUTH, 404],
  },
  {
    method: "post",
    path: "/v1/infer",
    summary: "Ask one specialist; answers its result.",
    tag: "Inference",
    security: "apiKey",
    body: "InferRequest",
    ok: { 200: ok("The specialist's answer.", "InferResponse") },
    errors: INFERENCE,
  },
  {
    method: "post",
    path: "/v1/chat/completions",
    summary: 'OpenAI-compatible chat completion, streamed with "stream": true.',
    tag: "Inference",
    security: "apiKey",
    body: "ChatCompletionRequest",
    ok: {
      200: {
        description:
          'The completion; with "stream": true, Server-Sent Events of chunks ending with `data: [DONE]` (an error after the stream started arrives as one event with the Error body).',
        content: { "application/json": { schema: ref("ChatCompletion") }, "text/event-stream": { schema: ref("ChatCompletionChunk") } },
      },
    },
    errors: INFERENCE,
  },
  {
    method: "post",
    path: "/v1/embeddings",
    summary: "OpenAI-compatible embedding vectors from an embeddings specialist (alveare-embed).",
    tag: "Inference",
    security: "apiKey",
    body: "EmbeddingsRequest",
    ok: { 200: ok("One unit-length vector per input, in input order.", "CreateEmbeddingResponse") },
    errors: [...WITH_BODY, ...V1_AUTH, 429, 503],
  },
  {
    method: "get",
    path: "/v1/usage",
    summary: "The key's account and mode this UTC month: requests, tokens, limit.",
    tag: "Account",
    security: "apiKey",
    ok: { 200: ok("This month's usage.", "Usage") },
    errors: V1_AUTH,
  },
  {
    method: "get",
    path: "/admin/api/accounts",
    summary: "List accounts.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The accounts.", "AccountList") },
    errors: ADMIN,
  },
  {
    method: "post",
    path: "/admin/api/accounts",
    summary: "Create an account on a plan.",
    tag: "Admin",
    security: "admin",
    body: "CreateAccountRequest",
    ok: { 201: ok("Created.", "Account") },
    errors: [...ADMIN, ...WITH_BODY],
  },
  {
    method: "get",
    path: "/admin/api/accounts/:id",
    summary: "One account.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The account.", "Account") },
    errors: ADMIN,
  },
  {
    method: "patch",
    path: "/admin/api/accounts/:id",
    summary: "Change an account's plan or status (suspend, reactivate).",
    tag: "Admin",
    security: "admin",
    body: "UpdateAccountRequest",
    ok: { 200: ok("The account after the change.", "Account") },
    errors: [...ADMIN, ...WITH_BODY],
  },
  {
    method: "get",
    path: "/admin/api/accounts/:id/keys",
    summary: "An account's API keys (never their secrets).",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The keys.", "ApiKeyList") },
    errors: ADMIN,
  },
  {
    method: "post",
    path: "/admin/api/accounts/:id/keys",
    summary: "Create an API key; the answer is the only place its secret appears.",
    tag: "Admin",
    security: "admin",
    body: "CreateKeyRequest",
    bodyOptional: true,
    ok: { 201: ok("Created, with the secret.", "ApiKey") },
    errors: [...ADMIN, ...WITH_BODY],
  },
  {
    method: "post",
    path: "/admin/api/keys/:id/revoke",
    summary: "Revoke an API key.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("Revoked.", "RevokedKey") },
    errors: [...ADMIN, 413],
  },
  {
    method: "post",
    path: "/admin/api/accounts/:id/invitations",
    summary: "Invite a member to an account's dashboard.",
    tag: "Admin",
    security: "admin",
    body: "InviteMemberRequest",
    ok: { 201: ok("The invitation link to send.", "Invitation") },
    errors: [...ADMIN, ...WITH_BODY],
  },
  {
    method: "get",
    path: "/admin/api/accounts/:id/members",
    summary: "An account's members and whether each accepted.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The members.", "MemberList") },
    errors: ADMIN,
  },
  {
    method: "delete",
    path: "/admin/api/accounts/:id/members/:memberId",
    summary:
      "Remove a member: their sessions end, their password and invitations stop working, and the API keys they created are revoked, at once; the e-mail can be invited again.",
    tag: "Admin",
    security: "admin",
    query: [
      {
        name: "keep_keys",
        description: "true: the API keys the member created keep working, as the account's own (default false: revoked).",
        schema: { type: "string", enum: ["true", "false"] },
      },
    ],
    ok: { 204: { description: "Removed." } },
    errors: [400, ...ADMIN],
  },
  {
    method: "get",
    path: "/admin/api/plans",
    summary: "The plans this server serves (its config file's), smallest monthly quota first: what an account may be put on.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The plans.", "PlanList") },
    errors: ADMIN,
  },
  {
    method: "get",
    path: "/admin/api/accounts/:id/usage",
    summary: "An account's usage this UTC month.",
    tag: "Admin",
    security: "admin",
    query: [MODE_QUERY],
    ok: { 200: ok("This month's usage.", "Usage") },
    errors: [...ADMIN, 400],
  },
  {
    method: "get",
    path: "/admin/api/accounts/:id/usage/breakdown",
    summary: "Where an account's requests went: per key, per status, per day.",
    tag: "Admin",
    security: "admin",
    query: [
      MODE_QUERY,
      { name: "period", description: "The UTC month, YYYY-MM; this month when absent.", schema: { type: "string", pattern: "^\\d{4}-\\d{2}$" } },
    ],
    ok: { 200: ok("The breakdown.", "UsageBreakdown") },
    errors: [...ADMIN, 400],
  },
  {
    method: "get",
    path: "/admin/api/audit",
    summary: "The audit log, newest first: who changed what, when and from where.",
    tag: "Admin",
    security: "admin",
    query: [
      { name: "account", description: "Only this account's records.", schema: { type: "string" } },
      { name: "action", description: "Only this action, such as key.revoked or sign_in.failed.", schema: { type: "string" } },
      { name: "actor", description: "Only this actor: operator, cli, anonymous or member:<email>.", schema: { type: "string" } },
      { name: "since", description: "Records at or after this time (ISO 8601).", schema: { type: "string" } },
      { name: "until", description: "Records before this time (ISO 8601).", schema: { type: "string" } },
      { name: "limit", description: "Records per page, 1 to 1000 (default 100).", schema: { type: "integer", minimum: 1, maximum: 1000 } },
      { name: "cursor", description: "The next_cursor of the previous page.", schema: { type: "integer", minimum: 1 } },
    ],
    ok: { 200: ok("A page of records.", "AuditPage") },
    errors: [...ADMIN, 400],
  },
  {
    method: "get",
    path: "/admin/api/audit/:id",
    summary: "One audit record.",
    tag: "Admin",
    security: "admin",
    ok: { 200: ok("The record.", "AuditRecord") },
    errors: ADMIN,
  },
];

/** "/accounts/:id" as OpenAPI writes it: "/accounts/{id}". */
export const openApiPath = (fastifyPath: string): string => fastifyPath.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

const SECURITY: Record<Security, Array<Record<string, string[]>>> = {
  public: [],
  apiKey: [{ apiKey: [] }],
  admin: [{ adminToken: [] }, { operatorSession: [] }],
};

function operationObject(op: Operation) {
  const pathParams = [...op.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
  const query = (op.query ?? []).map((q) => ({ ...q, in: "query", required: false }));
  const parameters = [...pathParams, ...query];
  const statuses = [...new Set([...op.errors, ...ANY_ROUTE])].sort((a, b) => a - b);
  const responses: Record<string, unknown> = {};
  for (const [status, response] of Object.entries(op.ok)) responses[status] = { ...response, headers: { "X-Request-Id": REQUEST_ID } };
  for (const status of statuses) responses[String(status)] = { $ref: `#/components/responses/Error${status}` };
  return {
    operationId: `${op.method}${op.path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? "").toUpperCase())}`,
    summary: op.summary,
    tags: [op.tag],
    security: SECURITY[op.security],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(op.body === undefined ? {} : { requestBody: { required: op.bodyOptional !== true, content: json(op.body) } }),
    responses,
  };
}

/** A JSON copy: TypeBox's symbol keys dropped, nothing shared with the live schemas. */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) (paths[openApiPath(op.path)] ??= {})[op.method] = operationObject(op);
  // /ready answers 503 with the same body when something is missing, not the Error shape.
  (paths["/ready"]!.get as { responses: Record<string, unknown> }).responses["503"] = {
    description: "Not ready (or draining after SIGTERM): the checks name what is missing.",
    content: json("Readiness"),
  };
  const responses = Object.fromEntries(Object.keys(ERROR_STATUSES).map((status) => [`Error${status}`, errorResponse(Number(status) as ErrorStatus)]));
  return {
    openapi: "3.1.0",
    info: {
      title: "Alveare API",
      version,
      summary: "Small specialist models behind native and OpenAI-compatible inference, with keys, plans, limits and usage.",
      description:
        'Every error has one shape, `{"error": {"message", "type", "code", "param"}}`. Public routes take an API key as `Authorization: Bearer alv_live_…` (or `alv_test_…`); the admin API takes the operator\'s admin token the same way.',
    },
    tags: [
      { name: "Inference", description: "Calling the specialists." },
      { name: "Account", description: "The calling key's account." },
      { name: "Operations", description: "Probes and this document; no key needed." },
      { name: "Admin", description: "The operator's API; exists only when an admin token is configured." },
    ],
    paths,
    components: {
      schemas: plain(SCHEMAS),
      responses,
      securitySchemes: {
        apiKey: { type: "http", scheme: "bearer", bearerFormat: "alv_live_… or alv_test_…", description: "An API key of an account." },
        adminToken: { type: "http", scheme: "bearer", description: "The operator's admin token (ALVEARE_ADMIN_TOKEN)." },
        operatorSession: {
          type: "apiKey",
          in: "cookie",
          name: "alveare_session",
          description:
            "The operator's dashboard session (named __Host-alveare_session over TLS); state changes also need its CSRF token in X-CSRF-Token.",
        },
      },
    },
  };
}
