import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Type } from "@sinclair/typebox";
import { adminRequests } from "../src/api/schemas/admin.js";
import { chatCompletionRequest, type ChatCompletionRequestBody } from "../src/api/schemas/chat-completions.js";
import { inferRequest, type InferRequestBody } from "../src/api/schemas/infer.js";
import type { ChatCompletionCreateParams, InferRequest } from "../src/api/types.js";
import { ConfigError } from "../src/config/config-error.js";
import { configFile } from "../src/config/schemas.js";
import { ApiError } from "../src/errors.js";
import { problem, StringEnum } from "../src/schema/builders.js";
import { compileSchema, type CompiledSchema } from "../src/schema/compile.js";
import { parseConfigPart } from "../src/schema/config-errors.js";
import { parseBody } from "../src/schema/request-errors.js";
import { toChatMessages } from "../src/server/routes/tool-request.js";

/** What the client sees: [code, param, message]. */
function refusal<T>(compiled: CompiledSchema<T>, body: unknown): [string, string | null, string] {
  try {
    parseBody(compiled, body);
  } catch (error) {
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.status, 400);
    return [error.code, error.param, error.message];
  }
  assert.fail("the body was accepted");
}

function configRefusal(data: unknown): string {
  try {
    parseConfigPart(configFile, data, "");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("the config was accepted");
}

const chat = (extra: Record<string, unknown>) => ({ model: "alveare-chat", messages: [{ role: "user", content: "x" }], ...extra });
const infer = (extra: Record<string, unknown>) => ({ specialist: "classify", prompt: "x", ...extra });
const nested = (depth: number): unknown => JSON.parse("[".repeat(depth) + "]".repeat(depth));

describe("request schemas: Ajv errors mapped to the error catalogue", () => {
  it("required: missing_parameter naming the parameter, nested paths included", () => {
    assert.deepEqual(refusal(inferRequest, { specialist: "classify" }), ["missing_parameter", "prompt", "Missing required parameter: 'prompt'."]);
    // Content may be absent on an assistant turn with tool calls, so its absence elsewhere is refused where messages are read.
    assert.throws(
      () => toChatMessages(parseBody(chatCompletionRequest, { model: "m", messages: [{ role: "user" }] }).messages),
      (e: unknown) =>
        e instanceof ApiError &&
        e.code === "missing_parameter" &&
        e.param === "messages[0].content" &&
        e.message === "Missing required parameter: 'messages[0].content'.",
    );
    assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: { type: "json_schema", json_schema: { name: "x" } } })), [
      "missing_parameter",
      "response_format.json_schema.schema",
      "Missing required parameter: 'response_format.json_schema.schema'.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [{ role: "user", content: [{ type: "text" }] }] })), [
      "missing_parameter",
      "messages[0].content[0].text",
      "Missing required parameter: 'messages[0].content[0].text'.",
    ]);
  });

  it("null: absent for an optional parameter, missing for a required one, wrong for an array item", () => {
    assert.deepEqual(
      parseBody(inferRequest, infer({ max_tokens: null, temperature: null, top_p: null, seed: null })),
      infer({ max_tokens: null, temperature: null, top_p: null, seed: null }),
    );
    parseBody(chatCompletionRequest, chat({ stop: null, stream: null, stream_options: null, response_format: null, n: null }));
    assert.deepEqual(refusal(inferRequest, { specialist: "classify", prompt: null }), [
      "missing_parameter",
      "prompt",
      "Missing required parameter: 'prompt'.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [null] })), [
      "invalid_parameter",
      "messages[0]",
      "Invalid 'messages[0]': expected a message object.",
    ]);
  });

  it("type: nothing is coerced, and a number's wrong value is quoted", () => {
    assert.deepEqual(refusal(inferRequest, infer({ max_tokens: "5" })), [
      "invalid_parameter",
      "max_tokens",
      "Invalid 'max_tokens': expected an integer, got string \"5\".",
    ]);
    assert.deepEqual(refusal(inferRequest, infer({ max_tokens: 1.5 })), [
      "invalid_parameter",
      "max_tokens",
      "Invalid 'max_tokens': expected an integer, got number 1.5.",
    ]);
    assert.deepEqual(refusal(inferRequest, infer({ temperature: true })), [
      "invalid_parameter",
      "temperature",
      "Invalid 'temperature': expected a number, got boolean true.",
    ]);
    assert.deepEqual(refusal(inferRequest, infer({ prompt: 5 })), [
      "invalid_parameter",
      "prompt",
      "Invalid 'prompt': expected a string, got number.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stream: "yes" })), [
      "invalid_parameter",
      "stream",
      "Invalid 'stream': expected a boolean, got string.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stream_options: [] })), [
      "invalid_parameter",
      "stream_options",
      "Invalid 'stream_options': expected an object, got array.",
    ]);
  });

  it("type: an array or object is named by its type only, however deep or long", () => {
    assert.deepEqual(refusal(inferRequest, infer({ max_tokens: nested(100_000) })), [
      "invalid_parameter",
      "max_tokens",
      "Invalid 'max_tokens': expected an integer, got array.",
    ]);
    assert.deepEqual(refusal(inferRequest, infer({ seed: { a: 1 } })), [
      "invalid_parameter",
      "seed",
      "Invalid 'seed': expected an integer, got object.",
    ]);
    const [, , message] = refusal(inferRequest, infer({ max_tokens: "9".repeat(10_000) }));
    assert.equal(message, `Invalid 'max_tokens': expected an integer, got string "${"9".repeat(40)}…".`);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [{ role: "user", content: nested(100_000) }] })), [
      "invalid_parameter",
      "messages[0].content[0]",
      "Invalid 'messages[0].content[0]': only parts of type 'text' are supported.",
    ]);
  });

  it("minimum, maximum and exclusiveMinimum: both bounds and the value", () => {
    assert.deepEqual(refusal(inferRequest, infer({ max_tokens: 0 })), [
      "invalid_parameter",
      "max_tokens",
      "Invalid 'max_tokens': must be at least 1 and at most 4096, got 0.",
    ]);
    assert.deepEqual(refusal(inferRequest, infer({ max_tokens: 4097 })), [
      "invalid_parameter",
      "max_tokens",
      "Invalid 'max_tokens': must be at least 1 and at most 4096, got 4097.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ top_p: 0 })), [
      "invalid_parameter",
      "top_p",
      "Invalid 'top_p': must be greater than 0 and at most 1, got 0.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ n: 9 })), [
      "invalid_parameter",
      "n",
      "Invalid 'n': must be at least 1 and at most 8, got 9.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ n: 0 })), [
      "invalid_parameter",
      "n",
      "Invalid 'n': must be at least 1 and at most 8, got 0.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ logprobs: true, top_logprobs: 21 })), [
      "invalid_parameter",
      "top_logprobs",
      "Invalid 'top_logprobs': must be at least 0 and at most 20, got 21.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ max_completion_tokens: 5000 })), [
      "invalid_parameter",
      "max_completion_tokens",
      "Invalid 'max_completion_tokens': must be at least 1 and at most 4096, got 5000.",
    ]);
  });

  it("minLength, minItems and maxItems, with the schema's own wording where it has one", () => {
    assert.deepEqual(refusal(inferRequest, infer({ prompt: "" })), ["invalid_parameter", "prompt", "Invalid 'prompt': must not be empty."]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [] })), [
      "invalid_parameter",
      "messages",
      "Invalid 'messages': must contain at least one message.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: {} })), [
      "invalid_parameter",
      "messages",
      "Invalid 'messages': expected an array of message objects.",
    ]);
    const stop = ["invalid_parameter", "stop", "Invalid 'stop': expected a non-empty string or an array of up to 4 non-empty strings."];
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stop: ["a", "b", "c", "d", "e"] })), stop);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stop: ["a", ""] })), stop);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stop: "" })), stop);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stop: 5 })), stop);
    const plain = compileSchema(
      Type.Object({ tags: Type.Array(Type.String(), { minItems: 2, maxItems: 3 }), code: Type.String({ minLength: 3, maxLength: 4 }) }),
    );
    assert.equal(refusal(plain, { tags: ["a"], code: "abc" })[2], "Invalid 'tags': must contain at least 2 items.");
    assert.equal(refusal(plain, { tags: ["a", "b", "c", "d"], code: "abc" })[2], "Invalid 'tags': must contain at most 3 items.");
    assert.equal(refusal(plain, { tags: ["a", "b"], code: "ab" })[2], "Invalid 'code': must be at least 3 characters long.");
    assert.equal(refusal(plain, { tags: ["a", "b"], code: "abcde" })[2], "Invalid 'code': must be at most 4 characters long.");
  });

  it("enum: message roles are five names, never an inherited property", () => {
    for (const role of ["function", "constructor", "__proto__", "toString", "hasOwnProperty"]) {
      assert.deepEqual(
        refusal(
          chatCompletionRequest,
          chat({
            messages: [
              { role: "user", content: "x" },
              { role, content: "x" },
            ],
          }),
        ),
        [
          "invalid_parameter",
          "messages[1].role",
          `Invalid 'messages[1].role': must be "system", "developer", "user", "assistant" or "tool", got "${role}".`,
        ],
      );
    }
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [{ role: ["user"], content: "x" }] })), [
      "invalid_parameter",
      "messages[0].role",
      "Invalid 'messages[0].role': expected a string, got array.",
    ]);
    assert.deepEqual(refusal(adminRequests.updateAccount, { status: "frozen" }), [
      "invalid_parameter",
      "status",
      'Invalid \'status\': must be "active" or "suspended".',
    ]);
    assert.deepEqual(refusal(adminRequests.createKey, { mode: "prod" }), [
      "invalid_parameter",
      "mode",
      'Invalid \'mode\': must be "live" or "test".',
    ]);
    assert.deepEqual(refusal(adminRequests.createKey, { mode: null }), ["missing_parameter", "mode", "Missing required parameter: 'mode'."]);
  });

  it("const and a wording for one keyword only", () => {
    const schema = compileSchema(Type.Object({ v: Type.Literal(1), s: Type.Optional(StringEnum(["a", "b"], problem({ type: "needs a letter." }))) }));
    assert.equal(refusal(schema, { v: 2 })[2], "Invalid 'v': must be 1, got 2.");
    assert.equal(refusal(schema, { v: 1, s: 3 })[2], "Invalid 's': needs a letter.");
    assert.equal(refusal(schema, { v: 1, s: "c" })[2], 'Invalid \'s\': must be "a" or "b", got "c".');
  });

  it("any other keyword: still a 400 naming the parameter, never a thrown mapper", () => {
    const schema = compileSchema(
      Type.Object({
        a: Type.Optional(Type.Not(Type.String())),
        b: Type.Optional(Type.String({ pattern: "^x" })),
        c: Type.Optional(
          Type.Object(
            { d: Type.Integer() },
            {
              if: { type: "object", required: ["d"], properties: { d: { type: "integer" } } },
              then: { type: "object", properties: { d: { type: "integer", minimum: 5 } } },
            },
          ),
        ),
      }),
    );
    assert.deepEqual(refusal(schema, { a: "s" }), ["invalid_parameter", "a", "Invalid 'a': is not valid."]);
    assert.deepEqual(refusal(schema, { b: "y" }), ["invalid_parameter", "b", "Invalid 'b': is not valid."]);
    assert.deepEqual(refusal(schema, { c: { d: 1 } }), ["invalid_parameter", "c.d", "Invalid 'c.d': must be at least 5, got 1."]);
  });

  it("discriminator: the tag is named, or the whole part where the schema says so", () => {
    const format = ["invalid_parameter", "response_format.type", 'Invalid \'response_format.type\': must be "text", "json_object" or "json_schema".'];
    assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: { type: "xml" } })), format);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: {} })), format);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: { type: "toString" } })), format);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: { type: "json_schema", json_schema: { schema: [] } } })), [
      "invalid_parameter",
      "response_format.json_schema.schema",
      "Invalid 'response_format.json_schema.schema': expected an object, got array.",
    ]);
    assert.deepEqual(
      refusal(chatCompletionRequest, chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] })),
      ["invalid_parameter", "messages[0].content[0]", "Invalid 'messages[0].content[0]': only parts of type 'text' are supported."],
    );
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [{ role: "user", content: [{ type: "text", text: 1 }] }] })), [
      "invalid_parameter",
      "messages[0].content[0].text",
      "Invalid 'messages[0].content[0].text': expected a string, got number.",
    ]);
  });

  it("the body itself: empty, not an object; unknown fields ignored", () => {
    assert.deepEqual(refusal(inferRequest, undefined), [
      "invalid_json",
      null,
      "We could not parse the JSON body of your request: the body is empty; send a JSON object",
    ]);
    assert.deepEqual(refusal(inferRequest, [1, 2]), ["invalid_parameter", "body", "Invalid 'body': the body must be a JSON object."]);
    assert.deepEqual(refusal(inferRequest, null), ["invalid_parameter", "body", "Invalid 'body': the body must be a JSON object."]);
    const body = chat({ user: "u1", frequency_penalty: 0, logit_bias: { 1: 2 } });
    assert.equal(parseBody(chatCompletionRequest, body), body);
    // The client's JSON Schema is opaque here, however it looks.
    parseBody(
      chatCompletionRequest,
      chat({ response_format: { type: "json_schema", json_schema: { schema: { type: 7, properties: nested(1000) } } } }),
    );
  });

  it("accepts everything the TypeScript SDK's request types allow", () => {
    // Compile-time: a body the SDK may send is a body the schema describes.
    const fromSdk = (r: InferRequest): InferRequestBody => r;
    const chatFromSdk = (r: ChatCompletionCreateParams): ChatCompletionRequestBody => r;
    const sdkChat: ChatCompletionCreateParams = {
      model: "alveare-chat",
      messages: [
        { role: "system", content: [{ type: "text", text: "x" }] },
        { role: "user", content: "y" },
      ],
      stop: ["a"],
      stream: true,
      stream_options: { include_usage: true },
      seed: null,
      response_format: { type: "json_schema", json_schema: { name: "n", schema: { type: "object" }, strict: true } },
    };
    parseBody(chatCompletionRequest, chatFromSdk(sdkChat));
    parseBody(inferRequest, fromSdk({ specialist: "classify", prompt: "p", max_tokens: 3, temperature: 0, top_p: 1, seed: -5 }));
  });
});

describe("config schemas: Ajv errors as ConfigErrors naming the dotted path", () => {
  it("additionalProperties: an unknown field, with the known ones", () => {
    assert.equal(
      configRefusal({ prot: 1 }),
      "configuration error at prot: unknown field (expected one of: port, host, data_dir, log_level, body_limit, database_url, redis_url, engine, models, specialists, plans)",
    );
    assert.equal(
      configRefusal({ engine: { threds: 2 } }),
      "configuration error at engine.threds: unknown field (expected one of: parallel, queue, threads)",
    );
    assert.match(
      configRefusal({ specialists: { x: { remote: { upstreams: [{ base_url: "http://a", modle: "m" }] } } } }),
      /^configuration error at specialists\.x\.remote\.upstreams\[0\]\.modle: unknown field/,
    );
  });

  it("type, minLength, minimum/maximum and enum in the config's words", () => {
    assert.equal(configRefusal({ port: "80" }), "configuration error at port: must be an integer");
    assert.equal(configRefusal({ port: 70000 }), "configuration error at port: must be between 0 and 65535");
    assert.equal(configRefusal({ host: "" }), "configuration error at host: must be a non-empty string");
    assert.equal(configRefusal({ host: 1 }), "configuration error at host: must be a non-empty string");
    assert.equal(configRefusal({ engine: [] }), "configuration error at engine: must be an object");
    assert.equal(configRefusal({ models: { big: "" } }), "configuration error at models.big: must be a non-empty string");
    assert.equal(configRefusal({ specialists: { x: { enabled: "no" } } }), "configuration error at specialists.x.enabled: must be true or false");
    assert.equal(configRefusal({ specialists: { x: { system_prompt: 1 } } }), "configuration error at specialists.x.system_prompt: must be a string");
    assert.equal(
      configRefusal({ specialists: { x: { defaults: { top_p: 0 } } } }),
      "configuration error at specialists.x.defaults.top_p: must be between 0.000001 and 1",
    );
    assert.equal(
      configRefusal({ specialists: { chat: { output: { type: "xml" } } } }),
      "configuration error at specialists.chat.output.type: must be one of text, labels, json_object, json_schema",
    );
    assert.equal(
      configRefusal({ plans: { solo: { window_seconds: 0 } } }),
      "configuration error at plans.solo.window_seconds: must be between 0.1 and 86400",
    );
    assert.equal(configRefusal({ plans: { solo: { max_keys: 0 } } }), "configuration error at plans.solo.max_keys: must be between 1 and 100000");
  });

  it("propertyNames and the schema's own wording (lists, threads, tables)", () => {
    assert.equal(
      configRefusal({ specialists: { Bad: {} } }),
      "configuration error at specialists.Bad: id must be lowercase letters, digits, '-' or '_'",
    );
    assert.equal(configRefusal({ plans: { constructor: 5 } }), "configuration error at plans.constructor: must be an object");
    assert.equal(
      configRefusal(JSON.parse('{"plans":{"__proto__":{}}}')),
      "configuration error at plans.__proto__: name must be lowercase letters, digits, '-' or '_'",
    );
    assert.equal(configRefusal({ plans: [] }), "configuration error at plans: must be an object keyed by plan name");
    assert.equal(configRefusal({ specialists: 1 }), "configuration error at specialists: must be an object keyed by specialist id");
    assert.equal(
      configRefusal({ engine: { threads: "many" } }),
      'configuration error at engine.threads: must be "auto" or an integer between 1 and 1024',
    );
    assert.equal(configRefusal({ engine: { threads: 0 } }), 'configuration error at engine.threads: must be "auto" or an integer between 1 and 1024');
    const list = "must be a non-empty array of non-empty strings";
    assert.equal(configRefusal({ plans: { solo: { specialists: [] } } }), `configuration error at plans.solo.specialists: ${list}`);
    assert.equal(configRefusal({ plans: { solo: { specialists: ["a", ""] } } }), `configuration error at plans.solo.specialists: ${list}`);
    assert.equal(
      configRefusal({ specialists: { c: { output: { type: "labels", labels: "a" } } } }),
      `configuration error at specialists.c.output.labels: ${list}`,
    );
    assert.equal(
      configRefusal({ specialists: { x: { remote: { upstreams: [] } } } }),
      "configuration error at specialists.x.remote.upstreams: must be a non-empty array",
    );
    assert.equal(
      configRefusal({ specialists: { x: { remote: { upstreams: [1] } } } }),
      "configuration error at specialists.x.remote.upstreams[0]: must be an object",
    );
  });

  it("required, where a schema asks for a field", () => {
    const schema = compileSchema(Type.Object({ a: Type.Object({ b: Type.String() }) }));
    assert.throws(() => parseConfigPart(schema, { a: {} }, "top"), { message: "configuration error at top.a.b: is required" });
  });
});
