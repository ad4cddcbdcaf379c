import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Type } from "@sinclair/typebox";
import { adminRequests } from "../src/api/schemas/admin.js";
import { chatCompletionRequest, type ChatCompletionRequestBody } from "../src/api/schemas/chat-completions.js";
import { embeddingsRequest } from "../src/api/schemas/embeddings.js";
import { inferRequest, type InferRequestBody } from "../src/api/schemas/infer.js";
import type { ChatCompletionCreateParams, InferRequest } from "../src/api/types.js";
import { ConfigError } from "../src/config/config-error.js";
import { configFile } from "../src/config/schemas.js";
import { ApiError } from "../src/errors.js";
import { problem, StringEnum } from "../src/schema/builders.js";
import { compileSchema, type CompiledSchema } from "../src/schema/compile.js";
import { parseConfigPart } from "../src/schema/config-errors.js";
import { parseBody } from "../src/schema/request-errors.js";
import { parseChatRequest } from "../src/server/routes/chat-request.js";
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
    for (const name of ["", "has spaces", "a.b", "x".repeat(65)]) {
      assert.deepEqual(refusal(chatCompletionRequest, chat({ response_format: { type: "json_schema", json_schema: { name, schema: {} } } })), [
        "invalid_parameter",
        "response_format.json_schema.name",
        "Invalid 'response_format.json_schema.name': must be 1 to 64 letters, digits, underscores or dashes.",
      ]);
    }
    parseBody(
      chatCompletionRequest,
      chat({ response_format: { type: "json_schema", json_schema: { name: "Invoice_v2-".padEnd(64, "x"), schema: {} } } }),
    );
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
    // A null inside a parameter whose wording covers its items is a wrong value of it, not a missing parameter.
    assert.deepEqual(refusal(chatCompletionRequest, chat({ stop: ["a", null] })).slice(0, 2), ["invalid_parameter", "stop"]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ logit_bias: { "1": null } })), [
      "invalid_parameter",
      "logit_bias",
      "Invalid 'logit_bias': expected an object mapping token ids to bias values from -100 to 100.",
    ]);
    assert.deepEqual(refusal(embeddingsRequest, { model: "alveare-embed", input: ["a", null] }).slice(0, 2), ["invalid_parameter", "input"]);
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
    // As many as Azure OpenAI takes: formatting costs the chat template per message, whatever each holds.
    const turns = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: "a" }));
    assert.equal(chatCompletionRequest.check(chat({ messages: turns(2048) })).ok, true);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: turns(2049) })), [
      "invalid_parameter",
      "messages",
      "Invalid 'messages': must hold at most 2048 messages.",
    ]);
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: {} })), [
      "invalid_parameter",
      "messages",
      "Invalid 'messages': expected an array of message objects.",
    ]);
    // A content array holds a part at least, as OpenAI requires, whoever's turn it is.
    for (const [i, role] of ["system", "developer", "user", "assistant"].entries()) {
      const messages = [...Array.from({ length: i }, () => ({ role: "user", content: "x" })), { role, content: [] }];
      assert.deepEqual(refusal(chatCompletionRequest, chat({ messages })), [
        "invalid_parameter",
        `messages[${i}].content`,
        `Invalid 'messages[${i}].content': must hold at least one part.`,
      ]);
    }
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
      "configuration error at engine.threds: unknown field (expected one of: parallel, queue, threads, snapshot_memory_mb)",
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

describe("chat requests: OpenAI's rules beyond the body's shape", () => {
  /** What the client sees for a chat request: [code, param, message]. */
  const chatRefusal = (extra: Record<string, unknown>): [string, string | null, string] => {
    try {
      parseChatRequest(chat(extra));
    } catch (error) {
      assert.ok(error instanceof ApiError, String(error));
      assert.equal(error.status, 400);
      return [error.code, error.param, error.message];
    }
    assert.fail("the request was accepted");
  };
  const schema = (s: unknown) => ({ response_format: { type: "json_schema", json_schema: { name: "s", strict: true, schema: s } } });

  it("max_completion_tokens, OpenAI's current name, wins over max_tokens; the deprecated functions are refused naming them", () => {
    assert.equal(parseChatRequest(chat({ max_completion_tokens: 3, max_tokens: 6 })).maxTokens, 3);
    assert.equal(parseChatRequest(chat({ max_completion_tokens: null, max_tokens: 6 })).maxTokens, 6);
    assert.equal(parseChatRequest(chat({ max_completion_tokens: 4 })).maxTokens, 4);
    const fn = { name: "f", parameters: { type: "object", properties: {} } };
    assert.deepEqual(chatRefusal({ functions: [fn] }).slice(0, 2), ["invalid_parameter", "functions"]);
    assert.deepEqual(chatRefusal({ function_call: "auto" }).slice(0, 2), ["invalid_parameter", "function_call"]);
    assert.match(chatRefusal({ functions: [fn], function_call: { name: "f" } })[2], /deprecated form: send 'tools'/);
    parseChatRequest(chat({ functions: null, function_call: null }));
  });

  it("penalties within -2..2 and logit_bias within -100..100 are accepted; outside, refused naming the field", () => {
    parseChatRequest(chat({ frequency_penalty: -2, presence_penalty: 2, logit_bias: { "1": 100, "2": -100, "3": 0.5 } }));
    parseChatRequest(chat({ frequency_penalty: null, presence_penalty: null, logit_bias: null }));
    assert.deepEqual(chatRefusal({ frequency_penalty: 2.5 }), [
      "invalid_parameter",
      "frequency_penalty",
      "Invalid 'frequency_penalty': must be at least -2 and at most 2, got 2.5.",
    ]);
    assert.deepEqual(chatRefusal({ presence_penalty: -3 }).slice(0, 2), ["invalid_parameter", "presence_penalty"]);
    for (const bias of [{ "50256": -101 }, { "1": 100.5 }, { "1": "5" }, [1]]) {
      assert.deepEqual(chatRefusal({ logit_bias: bias }), [
        "invalid_parameter",
        "logit_bias",
        "Invalid 'logit_bias': expected an object mapping token ids to bias values from -100 to 100.",
      ]);
    }
    // Keys are token ids: a word, a negative or a fraction is refused, as OpenAI refuses them.
    for (const key of ["AI", "-1", "1.5", "", " 1", "x".repeat(10_000)]) {
      assert.deepEqual(chatRefusal({ logit_bias: { "1": 5, [key]: 5 } }), [
        "invalid_parameter",
        "logit_bias",
        "Invalid 'logit_bias': its keys must be token ids (non-negative integers, written as strings).",
      ]);
    }
  });

  it("audio output is refused naming modalities or audio; text alone, user, store and metadata as OpenAI takes them are accepted", () => {
    // A client asking for audio reads message.audio: answered with text alone, it would find none.
    for (const modalities of [["audio"], ["text", "audio"]]) {
      assert.deepEqual(chatRefusal({ modalities, audio: { voice: "alloy", format: "mp3" } }), [
        "invalid_parameter",
        "modalities",
        "Invalid 'modalities': only text output is served: send [\"text\"] or leave it out.",
      ]);
    }
    assert.deepEqual(chatRefusal({ audio: { voice: "alloy", format: "wav" } }).slice(0, 2), ["invalid_parameter", "audio"]);
    assert.deepEqual(chatRefusal({ modalities: ["video"] }).slice(0, 2), ["invalid_parameter", "modalities[0]"]);
    assert.deepEqual(chatRefusal({ modalities: "text" }).slice(0, 2), ["invalid_parameter", "modalities"]);
    const metadata = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`.padEnd(64, "x"), "v".repeat(512)]));
    parseChatRequest(chat({ modalities: ["text"], audio: null, user: "u1", store: false, metadata }));
    parseChatRequest(chat({ modalities: null, user: null, store: null, metadata: null }));
    // OpenAI refuses these before anything is generated; a client that passes here would fail there.
    assert.deepEqual(chatRefusal({ user: 42 }).slice(0, 2), ["invalid_parameter", "user"]);
    // A message's participant name likewise: a string (or null), then not used.
    parseChatRequest(
      chat({
        messages: [
          { role: "user", content: "x", name: "ann" },
          { role: "assistant", content: "y", name: null },
        ],
      }),
    );
    assert.deepEqual(refusal(chatCompletionRequest, chat({ messages: [{ role: "user", content: "x", name: 5 }] })).slice(0, 2), [
      "invalid_parameter",
      "messages[0].name",
    ]);
    // And the embeddings' end-user id.
    assert.deepEqual(refusal(embeddingsRequest, { model: "alveare-embed", input: "x", user: 42 }).slice(0, 2), ["invalid_parameter", "user"]);
    assert.equal(embeddingsRequest.check({ model: "alveare-embed", input: "x", user: "u1" }).ok, true);
    assert.deepEqual(chatRefusal({ store: "yes" }).slice(0, 2), ["invalid_parameter", "store"]);
    const wording = "Invalid 'metadata': expected an object of at most 16 string values, keys up to 64 characters and values up to 512.";
    for (const bad of [
      { a: 1 },
      { a: "v".repeat(513) },
      { ["k".repeat(65)]: "v" },
      { ["k".repeat(10_000)]: 5 },
      { ...metadata, one: "more" },
      ["a"],
    ]) {
      // The caller's key is never echoed: a path naming it would hold all of it.
      assert.deepEqual(chatRefusal({ metadata: bad }), ["invalid_parameter", "metadata", wording]);
    }
  });

  it("stream_options only with stream: true", () => {
    assert.equal(parseChatRequest(chat({ stream: true, stream_options: { include_usage: true } })).includeUsage, true);
    parseChatRequest(chat({ stream_options: null }));
    for (const stream of [false, null, undefined]) {
      assert.deepEqual(chatRefusal({ stream, stream_options: { include_usage: true } }), [
        "invalid_parameter",
        "stream_options",
        "Invalid 'stream_options': is only allowed when 'stream' is true.",
      ]);
    }
  });

  it("an assistant's refusal in the history, as a part or beside null content, is its text; nobody else's", () => {
    const history = (assistant: Record<string, unknown>) =>
      parseChatRequest(
        chat({
          messages: [
            { role: "user", content: "x" },
            { role: "assistant", ...assistant },
            { role: "user", content: "y" },
          ],
        }),
      ).messages[1];
    assert.deepEqual(history({ content: [{ type: "refusal", refusal: "I can't." }] }), { role: "assistant", content: "I can't." });
    assert.deepEqual(
      history({
        content: [
          { type: "text", text: "Well." },
          { type: "refusal", refusal: "No." },
        ],
      }),
      {
        role: "assistant",
        content: "Well.\nNo.",
      },
    );
    assert.deepEqual(history({ content: null, refusal: "I can't." }), { role: "assistant", content: "I can't." });
    assert.deepEqual(history({ content: "Sure.", refusal: null }), { role: "assistant", content: "Sure." });
    assert.deepEqual(chatRefusal({ messages: [{ role: "user", content: [{ type: "refusal", refusal: "no" }] }] }).slice(0, 2), [
      "invalid_parameter",
      "messages[0].content[0]",
    ]);
    assert.deepEqual(chatRefusal({ messages: [{ role: "user", content: "x", refusal: "no" }] }).slice(0, 2), [
      "invalid_parameter",
      "messages[0].refusal",
    ]);
    assert.deepEqual(chatRefusal({ messages: [{ role: "assistant", content: null }] }).slice(0, 2), ["missing_parameter", "messages[0].content"]);
  });

  it("tool parameters {} mean no arguments, and properties without a type are an object", () => {
    const parameters = (p: unknown) =>
      parseChatRequest(chat({ tools: [{ type: "function", function: { name: "f", parameters: p } }] })).tools?.tools[0]?.parameters;
    assert.deepEqual(parameters({}), { type: "object", properties: {} });
    assert.deepEqual(parameters({ properties: { a: { type: "string" } }, required: ["a"] }), {
      type: "object",
      properties: { a: { type: "string" } },
      required: ["a"],
    });
    for (const p of [{ type: "string" }, { type: "array", items: {} }, { description: "no properties" }]) {
      assert.deepEqual(
        chatRefusal({ tools: [{ type: "function", function: { name: "f", parameters: p } }] }).slice(0, 2),
        ["invalid_parameter", "tools[0].function.parameters"],
        JSON.stringify(p),
      );
    }
  });

  it("a pattern is a regular expression with or without Unicode mode, as validators differ", () => {
    for (const pattern of ["^[a-z]+$", "\\p{L}+", "[\\w-]", "\\-"]) {
      assert.notEqual(parseChatRequest(chat(schema({ type: "object", properties: { v: { type: "string", pattern } } }))), undefined, pattern);
    }
  });

  it("a schema that is not a JSON Schema, or refers to nothing in itself, is refused naming the keyword and where", () => {
    const cases: Array<[unknown, string]> = [
      [{ type: "object", properties: { v: { type: "string", enum: "abc" } } }, "'enum' at schema.properties.v must be a list"],
      [{ type: "object", properties: { v: null } }, "'properties' at schema must be an object of schemas"],
      [{ type: "object", properties: [] }, "'properties' at schema must be an object of schemas"],
      [{ anyOf: [5] }, "'anyOf' at schema must be a list of schemas"],
      [{ oneOf: ["x"] }, "'oneOf' at schema must be a list of schemas"],
      [{ type: "string", minLength: -1 }, "'minLength' at schema must be a whole number, 0 or more"],
      [{ type: "string", minLength: "3" }, "'minLength' at schema must be a whole number, 0 or more"],
      [{ type: "array", maxItems: 1.5 }, "'maxItems' at schema must be a whole number, 0 or more"],
      [{ type: "object", required: "a" }, "'required' at schema must be a list of property names"],
      [{ type: "array", items: 5 }, "'items' at schema must be a schema"],
      [{ type: "object", additionalProperties: 5 }, "'additionalProperties' at schema must be a schema"],
      [{ $ref: "#/$defs/a", $defs: 5 }, "'$defs' at schema must be an object of schemas"],
      [{ type: "number", multipleOf: 0 }, "'multipleOf' at schema must be more than 0"],
      [{ type: "strin" }, `'type' at schema must be one of string, number, integer, boolean, object, array, null (or a list of them), not "strin"`],
      [
        { type: "object", properties: { v: { type: "string", pattern: "([" } } },
        `'pattern' at schema.properties.v must be a regular expression ("([" is not one)`,
      ],
      [
        { type: "object", patternProperties: { "^a(": { type: "string" } } },
        `'patternProperties' at schema must be keyed by regular expressions ("^a(" is not one)`,
      ],
    ];
    for (const [s, what] of cases) {
      assert.deepEqual(
        chatRefusal(schema(s)),
        [
          "invalid_parameter",
          "response_format.json_schema.schema",
          `Invalid 'response_format.json_schema.schema': this is not a JSON Schema: ${what}.`,
        ],
        JSON.stringify(s),
      );
    }
    // Nowhere, elsewhere, or onto data rather than a schema (a list of names, a list's length).
    for (const ref of [
      "#/$defs/nope",
      "#/$defs/a/b",
      "http://example.com/s.json",
      "#anchor",
      "#/required",
      "#/required/0",
      "#/prefixItems/length",
      "#/$defs/a/enum/0",
      "#/$defs/a/default",
    ]) {
      const defs = { a: { type: "object", enum: [{ type: "string" }], default: { type: "string" } } };
      assert.deepEqual(chatRefusal(schema({ $ref: ref, $defs: defs, required: ["a"], prefixItems: [{ type: "string" }] })), [
        "invalid_parameter",
        "response_format.json_schema.schema",
        `Invalid 'response_format.json_schema.schema': '$ref' at schema is ${JSON.stringify(ref)}, which points to no schema in this one: refer to a definition in it ('#/$defs/name').`,
      ]);
    }
    parseChatRequest(chat(schema({ type: "object", properties: { a: { $ref: "#/prefixItems/0" } }, prefixItems: [{ type: "string" }] })));
    // Tools too: a malformed parameter schema reached node-llama-cpp's prompt writer, a 500 the SDK retried twice.
    assert.deepEqual(
      chatRefusal({
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { v: { enum: "abc" } } } } }],
      }).slice(0, 2),
      ["invalid_parameter", "tools[0].function.parameters"],
    );
    // Pointers resolve as JSON Schema writes them; a property or a definition may have any name, a keyword's among them.
    for (const s of [
      { $ref: "#/$defs/a~1b", $defs: { "a/b": { type: "integer" } } },
      { $ref: "#/$defs/a%20b", $defs: { "a b": { type: "integer" } } },
      { $ref: "#/definitions/K", definitions: { K: { type: "string" } } },
      { type: "object", properties: { enum: { type: "string" }, required: { type: "integer" }, $ref: { type: "boolean" } } },
      { enum: [{ $ref: 5 }, { minLength: -1 }] },
    ]) {
      parseChatRequest(chat(schema(s)));
    }
  });

  it("a refusal quotes the schema's own names and values cut short, however long or deep they are", () => {
    const long = (c: string) => c.repeat(30_000);
    let deep: Record<string, unknown> = { type: "strin" };
    // Within the nesting limit (32 levels), 15 long names make a long path.
    for (let i = 0; i < 15; i++) deep = { type: "object", properties: { [`${"n".repeat(100)}${i}`]: deep } };
    const cases: Array<[unknown, RegExp]> = [
      [{ type: long("x") }, /not "x{40}…"\.$/],
      [{ $ref: long("y") }, /'\$ref' at schema is "y{40}…", which points to no schema/],
      [{ type: "object", properties: { [long("z")]: { type: 5 } } }, /'type' at schema\.properties\.z{40}… must be one of/],
      [
        deep,
        /^Invalid 'response_format\.json_schema\.schema': this is not a JSON Schema: 'type' at schema\.properties\.n{40}…\.properties\.n{40}….*…$/,
      ],
    ];
    for (const [s, what] of cases) {
      const [code, , message] = chatRefusal(schema(s));
      assert.equal(code, "invalid_parameter");
      assert.match(message, what);
      assert.ok(message.length <= 650, `${message.length} characters`);
    }
  });

  it("a schema no answer can meet is refused naming where: min over max, an empty anyOf, oneOf or type", () => {
    const cases: Array<[unknown, string]> = [
      [
        { type: "object", properties: { a: { type: "array", minItems: 5, maxItems: 2 } } },
        "minItems (5) is more than maxItems (2) at schema.properties.a",
      ],
      [
        { type: "object", properties: { a: { type: "string", minLength: 5, maxLength: 2 } } },
        "minLength (5) is more than maxLength (2) at schema.properties.a",
      ],
      [{ type: "object", minProperties: 3, maxProperties: 1 }, "minProperties (3) is more than maxProperties (1) at schema"],
      [{ type: "array", items: { type: "number", minimum: 2, maximum: 1 } }, "minimum (2) is more than maximum (1) at schema.items"],
      [{ type: "object", properties: { a: { anyOf: [] } } }, "'anyOf' is an empty list at schema.properties.a"],
      [{ $defs: { d: { oneOf: [] } }, $ref: "#/$defs/d" }, "'oneOf' is an empty list at schema.$defs.d"],
      [{ type: [] }, "'type' is an empty list at schema"],
    ];
    for (const [s, where] of cases) {
      assert.deepEqual(chatRefusal(schema(s)), [
        "invalid_parameter",
        "response_format.json_schema.schema",
        `Invalid 'response_format.json_schema.schema': no answer can meet the schema: ${where}.`,
      ]);
    }
    const tool = {
      type: "function",
      function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", minLength: 2, maxLength: 1 } } } },
    };
    assert.deepEqual(chatRefusal({ tools: [tool] }).slice(0, 2), ["invalid_parameter", "tools[0].function.parameters"]);
    // Values are not schemas: an enum or const may hold anything.
    parseChatRequest(chat(schema({ enum: [{ anyOf: [] }, { minLength: 3, maxLength: 1 }], const: { type: [] } })));
    parseChatRequest(chat(schema({ type: "string", minLength: 2, maxLength: 2 })));
  });
});
