"""The client against a real `alveare serve`. The Node test suite (test/sdk-python.test.ts)
starts the server, makes the keys and passes them in the environment."""
import base64
import inspect
import json
import math
import os
import struct
import socket
import subprocess
import sys
import time
import typing
import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import List
from pathlib import Path

import alveare
from alveare import (
    Alveare,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ChatCompletion,
    InferResponse,
    InternalServerError,
    MissingApiKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
)
from alveare._errors import error_from_response
from alveare._types import ChatMessage

BASE_URL = os.environ.get("ALVEARE_TEST_BASE_URL")
KEYS = {name: os.environ.get(f"ALVEARE_TEST_KEY_{name.upper()}") for name in ("pro", "solo", "burst", "chat_burst", "tiny")}


@unittest.skipUnless(BASE_URL, "needs a server: run through npm test")
class AgainstARealServer(unittest.TestCase):
    def client(self, key="pro", **options):
        return Alveare(api_key=KEYS[key], base_url=BASE_URL, **options)

    def test_every_endpoint(self):
        c = self.client()
        self.assertEqual(c.health().status, "ok")
        inferred = c.infer(specialist="classify", prompt="I love it", max_tokens=8)
        self.assertIsInstance(inferred, InferResponse)
        self.assertIn(inferred.result, ("positive", "negative", "neutral"))
        self.assertTrue(inferred.id.startswith("inf-"))
        self.assertGreaterEqual(inferred.tokens_used, 1)
        completion = c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        self.assertIsInstance(completion, ChatCompletion)
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(completion.choices[0].message.role, "assistant")
        self.assertLessEqual(completion.usage.completion_tokens, 4)
        models = c.models.list()
        self.assertEqual(len(models.data), 8)
        self.assertIn("alveare-chat", [m.id for m in models.data])
        self.assertEqual(c.models.retrieve("alveare-chat"), next(m for m in models.data if m.id == "alveare-chat"))
        with self.assertRaises(NotFoundError) as missing:
            c.models.retrieve("alveare-nothing/../x")
        self.assertEqual(missing.exception.code, "model_not_found")
        usage = c.usage.get()
        self.assertGreaterEqual(usage.requests_used, 2)
        self.assertEqual(usage.requests_limit, 500000)

    def test_each_answer_carries_the_servers_id_for_its_exchange(self):
        c = self.client()
        answers = [c.health(), c.infer(specialist="classify", prompt="hi", max_tokens=2), c.models.list(), c.usage.get(),
                   c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2)]
        ids = [a._request_id for a in answers]
        for request_id in ids:
            self.assertRegex(str(request_id), r"^req_\w+$")
        self.assertEqual(len(set(ids)), len(ids))
        # Not a field: the answer reads as the JSON the server sent.
        self.assertNotIn("_request_id", answers[-1].to_dict())
        self.assertNotIn("_request_id", answers[-1])
        self.assertIsNone(answers[-1].choices[0]._request_id)
        stream = c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True)
        self.assertRegex(str(stream._request_id), r"^req_\w+$")
        list(stream)

    def test_embeddings_and_tool_calls(self):
        c = self.client()
        floats = c.embeddings.create(model="alveare-embed", input=["bees", "honey"], dimensions=4)
        self.assertEqual([d.index for d in floats.data], [0, 1])
        self.assertEqual(len(floats.data[0].embedding), 4)
        self.assertGreater(floats.usage.prompt_tokens, 0)
        packed = c.embeddings.create(model="alveare-embed", input="bees", dimensions=4, encoding_format="base64")
        self.assertEqual(list(struct.unpack("<4f", base64.b64decode(packed.data[0].embedding))), floats.data[0].embedding)
        tool = {"type": "function", "function": {"name": "pick", "parameters": {
            "type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}}, "required": ["colour"]}}}
        completion = c.chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "pick"}], tools=[tool], tool_choice="required", max_tokens=300)
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        call = choice.message.tool_calls[0]
        self.assertEqual((call.type, call.function.name), ("function", "pick"))
        self.assertIn(json.loads(call.function.arguments)["colour"], ("red", "blue"))

    def test_responses_still_read_like_dicts(self):
        c = self.client()
        inferred = c.infer(specialist="classify", prompt="I love it", max_tokens=8)
        self.assertEqual(inferred["result"], inferred.result)
        self.assertEqual(inferred.get("nope", "default"), "default")
        self.assertEqual(dict(inferred), inferred.to_dict())
        self.assertEqual(set(inferred.to_dict()), {"id", "specialist", "result", "tokens_used", "latency_ms", "scores", "confidence"})
        self.assertAlmostEqual(sum(inferred.scores.values()), 1.0, places=6)
        self.assertEqual(inferred.confidence, inferred.scores.get(inferred.result, 0))
        completion = c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        self.assertEqual(completion["choices"][0]["message"]["content"], completion.choices[0].message.content)
        self.assertEqual(completion.to_dict()["usage"]["total_tokens"], completion.usage.total_tokens)
        # As JSON text: to_json(), or json.dumps of to_dict() (the object itself is no dict for json.dumps).
        self.assertEqual(json.loads(completion.to_json()), completion.to_dict())
        self.assertEqual(json.loads(json.dumps(inferred.to_dict())), inferred.to_dict())
        self.assertNotIn("\n", completion.to_json(indent=None))
        with self.assertRaises(KeyError):
            inferred["nope"]

    def test_accepts_a_base_url_ending_in_v1(self):
        c = Alveare(api_key=KEYS["pro"], base_url=BASE_URL + "/v1/")
        self.assertEqual(c.base_url, BASE_URL)
        self.assertEqual(c.health().status, "ok")
        self.assertEqual(c.models.list().object, "list")

    def test_extra_body_sends_fields_newer_than_the_sdk(self):
        with self.assertRaises(BadRequestError) as bad:
            self.client(max_retries=0).infer(specialist="classify", prompt="x", extra_body={"temperature": 3})
        self.assertEqual(bad.exception.param, "temperature")
        with self.assertRaises(BadRequestError) as embeddings:
            self.client(max_retries=0).embeddings.create(model="alveare-embed", input="x", extra_body={"dimensions": 0})
        self.assertEqual(embeddings.exception.param, "dimensions")

    def test_several_choices_with_logprobs(self):
        completion = self.client().chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4, n=2, logprobs=True, top_logprobs=2
        )
        self.assertEqual([c.index for c in completion.choices], [0, 1])
        for choice in completion.choices:
            self.assertIsNone(choice.message.refusal)
            entry = choice.logprobs.content[0]
            self.assertLessEqual(entry.logprob, 0)
            self.assertEqual(len(entry.top_logprobs), 2)

    def test_takes_every_chat_parameter_the_server_accepts(self):
        # The server's request schema names them (the Node test passes its field names); `audio` it always refuses.
        accepted = set(os.environ["ALVEARE_TEST_CHAT_PARAMS"].split(",")) - {"audio"}
        self.assertIn("user", accepted)
        taken = set(inspect.signature(alveare._client._Completions.create).parameters)
        self.assertEqual(accepted - taken, set(), "parameters the server accepts that create() does not take")
        for refused in ("audio", "functions", "function_call"):
            self.assertNotIn(refused, taken)
        messages: List[ChatMessage] = [
            {"role": "developer", "content": "Answer in one word.", "name": "ops"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ada"},
            {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "Nor that."}]},
            {"role": "user", "content": "hi again"},
        ]
        completion = self.client().chat.completions.create(
            model="alveare-chat", messages=messages, max_completion_tokens=3, temperature=0, top_p=1, seed=7, stop=["\n\n"],
            n=1, logprobs=True, top_logprobs=1, response_format={"type": "text"}, frequency_penalty=0.5,
            presence_penalty=-0.5, logit_bias={"50256": -100}, user="user-1234", store=False, metadata={"team": "bees"},
            modalities=["text"],
        )
        self.assertEqual(completion.object, "chat.completion")
        self.assertLessEqual(completion.usage.completion_tokens, 3)
        self.assertEqual(len(completion.choices[0].logprobs.content[0].top_logprobs), 1)

    def test_a_chat_parameter_of_the_wrong_type_is_the_servers_400_as_bad_request_error(self):
        c = self.client(max_retries=0)
        for extra, param in (
            ({"user": 42}, "user"),
            ({"metadata": {"n": 1}}, "metadata"),
            ({"logit_bias": {"hello": 1}}, "logit_bias"),
            ({"frequency_penalty": "0.5"}, "frequency_penalty"),
            ({"modalities": ["text", "audio"]}, "modalities"),
            ({"stream": True, "store": "yes"}, "store"),
            ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ):
            args = {"model": "alveare-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
            with self.assertRaises(BadRequestError, msg=param) as bad:
                c.chat.completions.create(**args)
            error = bad.exception
            self.assertEqual((error.status, error.type, error.code, error.param), (400, "invalid_request_error", "invalid_parameter", param))
            self.assertRegex(error.request_id, r"^req_\w+$")
            self.assertIn(f"Invalid '{param}'", str(error))

    def test_a_developer_message_is_accepted(self):
        messages: List[ChatMessage] = [{"role": "developer", "content": "Answer in one word."}, {"role": "user", "content": "hi"}]
        completion = self.client().chat.completions.create(model="alveare-chat", messages=messages, max_tokens=2)
        self.assertEqual(completion.object, "chat.completion")

    def test_streams_to_the_end_with_usage(self):
        stream = self.client().chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(chunks[-1].choices, [])
        self.assertGreaterEqual(chunks[-1].usage.completion_tokens, 1)
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))

    def test_reads_key_and_base_url_from_the_environment(self):
        os.environ["ALVEARE_API_KEY"] = KEYS["pro"]
        os.environ["ALVEARE_BASE_URL"] = BASE_URL
        try:
            self.assertEqual(Alveare().health()["status"], "ok")
        finally:
            del os.environ["ALVEARE_API_KEY"]
            del os.environ["ALVEARE_BASE_URL"]
        with self.assertRaises(MissingApiKeyError) as missing:
            Alveare()
        self.assertIsInstance(missing.exception, AuthenticationError)
        self.assertIsInstance(missing.exception, ValueError)
        self.assertEqual(missing.exception.code, "missing_api_key")

    def test_one_error_class_per_status(self):
        c = self.client(max_retries=0)
        with self.assertRaises(BadRequestError) as bad:
            c.infer(specialist="classify", prompt="x", temperature=3)
        self.assertEqual((bad.exception.status, bad.exception.code, bad.exception.param), (400, "invalid_parameter", "temperature"))
        self.assertTrue(bad.exception.request_id.startswith("req_"))
        self.assertEqual(bad.exception.type, "invalid_request_error")
        with self.assertRaises(AuthenticationError):
            Alveare(api_key="alv_live_" + "x" * 40, base_url=BASE_URL).models.list()
        with self.assertRaises(PermissionDeniedError) as denied:
            self.client("solo").infer(specialist="code", prompt="x")
        self.assertEqual(denied.exception.code, "specialist_not_in_plan")
        with self.assertRaises(NotFoundError):
            c.request("GET", "/v1/nothing-here")
        with self.assertRaises(RequestTooLargeError):
            c.infer(specialist="classify", prompt="x" * (2 * 1024 * 1024))

    def test_an_oversized_body_after_another_request_is_a_413_not_a_broken_pipe(self):
        # The server answers 413 before reading the body; the client must get that answer, every time.
        c = self.client(max_retries=0)
        for _ in range(5):
            c.health()
            with self.assertRaises(RequestTooLargeError):
                c.infer(specialist="classify", prompt="x" * (2 * 1024 * 1024))

    def test_retries_server_errors_with_backoff(self):
        waits = []
        events = []
        with self.assertRaises(InternalServerError) as failed:
            self.client(max_retries=2, sleep=waits.append, on_retry=events.append).infer(specialist="flaky", prompt="x")
        self.assertEqual(failed.exception.status, 502)
        self.assertEqual(len(waits), 2)
        self.assertTrue(0.375 <= waits[0] <= 0.5 and 0.75 <= waits[1] <= 1.0, waits)
        self.assertEqual([e.attempt for e in events], [1, 2])
        self.assertEqual([e.delay for e in events], waits)
        self.assertTrue(all(isinstance(e.error, InternalServerError) and e.error.status == 502 for e in events))
        self.assertEqual((events[0].method, events[0].url), ("POST", BASE_URL + "/v1/infer"))

    def test_with_options_changes_retries_and_timeout_for_a_copy_only(self):
        waits = []
        client = self.client(max_retries=2, sleep=waits.append)
        once = client.with_options(max_retries=0, timeout=30)
        with self.assertRaises(InternalServerError):
            once.infer(specialist="flaky", prompt="x")
        self.assertEqual(waits, [], "no retry")
        self.assertEqual((once.timeout, once.max_retries), (30.0, 0))
        self.assertEqual((client.timeout, client.max_retries), (600.0, 2), "the client itself is unchanged")
        with self.assertRaises(InternalServerError):
            client.infer(specialist="flaky", prompt="x")
        self.assertEqual(len(waits), 2)
        self.assertEqual(client.with_options(timeout=None).timeout, None)
        with self.assertRaises(ValueError):
            client.with_options(timeout=0)

    def test_an_on_retry_hook_that_raises_stops_the_retries(self):
        waits = []

        def stop(event):
            raise RuntimeError(f"giving up after {event.error.status}")

        with self.assertRaisesRegex(RuntimeError, "giving up after 502"):
            self.client(max_retries=3, sleep=waits.append, on_retry=stop).infer(specialist="flaky", prompt="x")
        self.assertEqual(waits, [])

    def test_connection_errors_are_retried_then_raised_naming_host_and_cause(self):
        waits = []
        port = closed_port()
        with self.assertRaises(APIConnectionError) as failed:
            Alveare(api_key=KEYS["pro"], base_url=f"http://127.0.0.1:{port}", max_retries=1, sleep=waits.append).health()
        self.assertEqual(str(failed.exception), f"could not connect to 127.0.0.1:{port} (ECONNREFUSED)")
        self.assertEqual(len(waits), 1)

    def test_a_failed_connection_to_the_hosted_default_says_how_to_reach_your_own_server(self):
        real = socket.getaddrinfo

        def no_dns(host, *args, **kwargs):
            if host == "api.alveare.ai":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, *args, **kwargs)

        saved = os.environ.pop("ALVEARE_BASE_URL", None)
        socket.getaddrinfo = no_dns
        try:
            with self.assertRaises(APIConnectionError) as failed:
                Alveare(api_key=KEYS["pro"], max_retries=0).health()
        finally:
            socket.getaddrinfo = real
            if saved is not None:
                os.environ["ALVEARE_BASE_URL"] = saved
        self.assertEqual(
            str(failed.exception),
            "could not connect to api.alveare.ai (Name or service not known); no base_url was given, so this is the hosted "
            "service: for your own server pass base_url or set ALVEARE_BASE_URL",
        )

    def test_reports_the_servers_wait_on_a_rate_limit_as_retry_after_ms(self):
        c = self.client("burst", max_retries=0)

        def call(i):
            try:
                return c.infer(specialist="classify", prompt=f"r{i}", max_tokens=1)
            except RateLimitError as limited:
                return limited

        # Four at once against a plan of three per window: exactly one is turned away.
        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(call, range(4)))
        limited = [o for o in outcomes if isinstance(o, RateLimitError)]
        self.assertEqual(len(limited), 1, outcomes)
        self.assertEqual(limited[0].code, "rate_limit_exceeded")
        self.assertTrue(0 < limited[0].retry_after_ms <= 2000, limited[0].retry_after_ms)
        self.assertEqual(limited[0].retry_after_ms, float(limited[0].headers["retry-after-ms"]))

    def test_alveare_log_debug_logs_each_request_and_retry_to_stderr_without_the_key(self):
        script = (
            "import alveare\n"
            "c = alveare.Alveare(max_retries=1)\n"
            "c.health()\n"
            "try:\n    c.infer(specialist='flaky', prompt='x')\nexcept alveare.InternalServerError:\n    print('raised')\n"
        )
        env = {**os.environ, "ALVEARE_LOG": "debug", "ALVEARE_API_KEY": KEYS["pro"], "ALVEARE_BASE_URL": BASE_URL,
               "PYTHONPATH": str(Path(alveare.__file__).parent.parent)}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(run.stdout.strip(), "raised", run.stderr)
        lines = run.stderr.splitlines()
        self.assertRegex(lines[0], rf"^\[alveare\] GET {BASE_URL}/health -> 200 in \d+ ms \(req_\w+\)$")
        self.assertRegex(run.stderr, rf"\[alveare\] POST {BASE_URL}/v1/infer -> 502 in \d+ ms")
        self.assertRegex(run.stderr, r"\[alveare\] retry 1 of 1 for POST \S+/v1/infer in \d+ ms after InternalServerError 502")
        self.assertNotIn(KEYS["pro"], run.stderr)
        self.assertNotIn("Bearer", run.stderr)

    def test_waits_out_the_real_rate_limiter(self):
        waits = []

        def sleep(seconds):
            waits.append(seconds)
            time.sleep(seconds)

        c = self.client("burst", max_retries=3, sleep=sleep)
        started = time.monotonic()
        for i in range(5):
            self.assertTrue(c.infer(specialist="classify", prompt=f"n{i}", max_tokens=2)["result"])
        self.assertGreaterEqual(len(waits), 1)
        self.assertTrue(all(0 < w <= 2 for w in waits), waits)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)

    def test_a_chat_completions_429_is_retried_after_exactly_the_wait_it_names(self):
        events = []
        c = self.client("chat_burst", max_retries=3, on_retry=events.append)

        def call(i):
            return c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": f"w{i}"}], max_tokens=1)

        # Four at once against a plan of three per window: one is turned away, waits, and is answered.
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(call, range(4)))
        self.assertTrue(all(a.object == "chat.completion" for a in answers))
        self.assertGreaterEqual(len(events), 1, "one request was limited")
        for event in events:
            self.assertIsInstance(event.error, RateLimitError)
            self.assertEqual(event.error.code, "rate_limit_exceeded")
            headers = event.error.headers
            # The server sends both; retry-after-ms is the finer, and Retry-After its whole seconds, rounded up.
            self.assertEqual(event.delay, float(headers["retry-after-ms"]) / 1000)
            self.assertEqual(int(headers["retry-after"]), max(1, math.ceil(event.delay)))
            self.assertAlmostEqual(event.delay * 1000, event.error.retry_after_ms)

    def test_does_not_retry_a_monthly_quota(self):
        waits = []
        c = self.client("tiny", max_retries=3, sleep=waits.append)
        c.infer(specialist="classify", prompt="a", max_tokens=2)
        c.infer(specialist="classify", prompt="b", max_tokens=2)
        with self.assertRaises(RateLimitError) as limited:
            c.infer(specialist="classify", prompt="c", max_tokens=2)
        self.assertEqual(limited.exception.code, "monthly_quota_exceeded")
        self.assertEqual(limited.exception.headers.get("x-should-retry"), "false")
        self.assertEqual(waits, [])


def closed_port():
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Package(unittest.TestCase):
    def test_version(self):
        self.assertEqual(alveare.__version__, "0.2.0")

    def test_every_error_class_is_named_by_its_public_path(self):
        # Tracebacks and reprs say alveare.RateLimitError, not the private module.
        errors = [name for name in alveare.__all__
                  if isinstance(getattr(alveare, name), type) and issubclass(getattr(alveare, name), BaseException)]
        self.assertIn("MalformedApiKeyError", errors)
        self.assertEqual([name for name in errors if getattr(alveare, name).__module__ != "alveare"], [])


class WithoutAServer(unittest.TestCase):
    def setUp(self):
        self.saved = {k: os.environ.pop(k) for k in ("ALVEARE_API_KEY", "ALVEARE_BASE_URL") if k in os.environ}

    def tearDown(self):
        os.environ.update(self.saved)

    def test_rejects_unknown_keyword_arguments_naming_them(self):
        c = Alveare(api_key="k", base_url="http://127.0.0.1:1")
        with self.assertRaisesRegex(TypeError, "maxtokens"):
            c.infer(specialist="classify", prompt="x", maxtokens=1)
        with self.assertRaisesRegex(TypeError, "temprature"):
            c.chat.completions.create(model="alveare-chat", messages=[], temprature=0.1)
        with self.assertRaisesRegex(TypeError, "baseurl"):
            Alveare(api_key="k", baseurl="http://h")

    def test_base_url_order_and_trailing_v1(self):
        for url in ("http://h:8080", "http://h:8080/", "http://h:8080/v1", "http://h:8080/v1/", "http://h:8080//v1//"):
            self.assertEqual(alveare.normalize_base_url(url), "http://h:8080", url)
        self.assertEqual(alveare.normalize_base_url("https://gw.example/alveare/v1"), "https://gw.example/alveare")
        os.environ["ALVEARE_BASE_URL"] = "http://from-env:1/v1"
        try:
            self.assertEqual(Alveare(api_key="k", base_url="http://from-option:2").base_url, "http://from-option:2")
            self.assertEqual(Alveare(api_key="k").base_url, "http://from-env:1")
        finally:
            del os.environ["ALVEARE_BASE_URL"]
        self.assertEqual(Alveare(api_key="k").base_url, "https://api.alveare.ai")

    def test_whitespace_around_the_base_url_is_dropped_as_around_the_key(self):
        self.assertEqual(Alveare(api_key="k", base_url=" http://h:8080/v1 \n").base_url, "http://h:8080")
        os.environ["ALVEARE_BASE_URL"] = "http://from-env:1/v1 \r\n"
        try:
            self.assertEqual(Alveare(api_key="k").base_url, "http://from-env:1")
            os.environ["ALVEARE_BASE_URL"] = "  "
            self.assertEqual(Alveare(api_key="k").base_url, "https://api.alveare.ai", "blank counts as unset")
        finally:
            del os.environ["ALVEARE_BASE_URL"]
        with self.assertRaises(alveare.InvalidBaseURLError):
            Alveare(api_key="k", base_url=" ")

    def test_refuses_a_base_url_that_is_not_http_or_https_naming_where_it_came_from(self):
        with self.assertRaises(alveare.InvalidBaseURLError) as refused:
            Alveare(api_key="k", base_url="127.0.0.1:18931")
        self.assertEqual(str(refused.exception), 'Invalid base URL "127.0.0.1:18931" from base_url=: it must be an http:// or https:// '
                         'URL such as "http://127.0.0.1:8080" (did you mean "http://127.0.0.1:18931"?).')
        self.assertIsInstance(refused.exception, alveare.AlveareError)
        self.assertIsInstance(refused.exception, ValueError)
        self.assertNotIsInstance(refused.exception, alveare.APIError)
        for url in ("localhost:8080", "ftp://h/x", "http:/h", "http://", "h/v1", "http://h:99999", "http://h/v1?x=1", "http://h#f"):
            with self.assertRaises(alveare.InvalidBaseURLError, msg=url):
                Alveare(api_key="k", base_url=url)
        os.environ["ALVEARE_BASE_URL"] = "127.0.0.1:1"
        try:
            with self.assertRaisesRegex(alveare.InvalidBaseURLError, "from ALVEARE_BASE_URL"):
                Alveare(api_key="k")
        finally:
            del os.environ["ALVEARE_BASE_URL"]
        self.assertEqual(Alveare(api_key="k", base_url="HTTPS://H:1/v1").base_url, "HTTPS://H:1")

    def test_an_empty_base_url_is_refused_and_an_empty_variable_counts_as_unset(self):
        # As in TypeScript (outside a browser): base_url="" is a mistake to report, like api_key="".
        with self.assertRaises(alveare.InvalidBaseURLError) as refused:
            Alveare(api_key="k", base_url="")
        self.assertEqual(str(refused.exception), 'Invalid base URL "" from base_url=: it must be an http:// or https:// URL '
                         'such as "http://127.0.0.1:8080" (leave it out to use ALVEARE_BASE_URL or the default).')
        os.environ["ALVEARE_BASE_URL"] = ""
        try:
            self.assertEqual(Alveare(api_key="k").base_url, "https://api.alveare.ai")
            with self.assertRaises(alveare.InvalidBaseURLError):
                Alveare(api_key="k", base_url="")
        finally:
            del os.environ["ALVEARE_BASE_URL"]

    def test_chat_roles_include_developer(self):
        self.assertEqual(typing.get_args(alveare._types.ChatRole), ("system", "developer", "user", "assistant", "tool"))

    def test_missing_key_is_a_typed_error(self):
        for key in (None, ""):
            with self.assertRaises(MissingApiKeyError):
                Alveare(api_key=key)

    def test_an_empty_key_is_refused_even_when_alveare_api_key_is_set(self):
        os.environ["ALVEARE_API_KEY"] = "alv_test_from_env"
        try:
            with self.assertRaises(MissingApiKeyError):
                Alveare(api_key="")
            self.assertEqual(Alveare(api_key=None).api_key, "alv_test_from_env")
            self.assertEqual(Alveare().api_key, "alv_test_from_env")
        finally:
            del os.environ["ALVEARE_API_KEY"]

    def test_retry_after_ms_from_retry_after_ms_then_retry_after(self):
        body = {"error": {"code": "rate_limit_exceeded"}}
        self.assertEqual(error_from_response(429, body, {"retry-after-ms": "1500", "retry-after": "2"}).retry_after_ms, 1500)
        self.assertEqual(error_from_response(429, body, {"retry-after": "3"}).retry_after_ms, 3000)
        self.assertIsNone(error_from_response(429, body, {}).retry_after_ms)

    def test_response_objects_from_json(self):
        chunk = alveare.ChatCompletionChunk.from_dict({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "alveare-chat", "future_field": 1,
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        })
        self.assertEqual(chunk.choices[0].delta.content, "hi")
        self.assertIsNone(chunk.choices[0].delta.role)
        self.assertEqual(chunk["choices"][0]["delta"].get("role", "none"), "none")
        self.assertNotIn("usage", chunk)
        self.assertEqual(chunk.to_dict()["choices"][0], {"index": 0, "delta": {"content": "hi"}})

    def test_reading_a_chunk_costs_far_less_than_a_token_takes(self):
        # A chunk with a log-probability took 1.7 ms to read (the field types were resolved anew each time): a
        # client reading a fast stream spent more time there than the server did generating.
        event = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "alveare-chat", "choices": [{
            "index": 0, "delta": {"content": "hi"}, "finish_reason": None,
            "logprobs": {"content": [{"token": "hi", "logprob": -1.0, "bytes": [104, 105],
                                      "top_logprobs": [{"token": "ho", "logprob": -2.0, "bytes": [104, 111]}]}],
                         "refusal": None}}]}
        started = time.perf_counter()
        for _ in range(2000):
            chunk = alveare.ChatCompletionChunk.from_dict(event)
        self.assertLess(time.perf_counter() - started, 1.0, "2,000 chunks")
        self.assertEqual(chunk.choices[0].logprobs.content[0].top_logprobs[0].token, "ho")


if __name__ == "__main__":
    unittest.main()
