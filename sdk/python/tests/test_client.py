"""The client against a real `alveare serve`. The Node test suite (test/sdk-python.test.ts)
starts the server, makes the keys and passes them in the environment."""
import os
import time
import unittest

import alveare
from alveare import (
    Alveare,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
)

BASE_URL = os.environ.get("ALVEARE_TEST_BASE_URL")
KEYS = {name: os.environ.get(f"ALVEARE_TEST_KEY_{name.upper()}") for name in ("pro", "solo", "burst", "tiny")}


@unittest.skipUnless(BASE_URL, "needs a server: run through npm test")
class AgainstARealServer(unittest.TestCase):
    def client(self, key="pro", **options):
        return Alveare(api_key=KEYS[key], base_url=BASE_URL, **options)

    def test_every_endpoint(self):
        c = self.client()
        self.assertEqual(c.health()["status"], "ok")
        inferred = c.infer(specialist="classify", prompt="I love it", max_tokens=8)
        self.assertIn(inferred["result"], ("positive", "negative", "neutral"))
        self.assertTrue(inferred["id"].startswith("inf-"))
        completion = c.chat.completions.create(model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        self.assertEqual(completion["object"], "chat.completion")
        self.assertLessEqual(completion["usage"]["completion_tokens"], 4)
        self.assertEqual(len(c.models.list()["data"]), 7)
        usage = c.usage.get()
        self.assertGreaterEqual(usage["requests_used"], 2)
        self.assertEqual(usage["requests_limit"], 500000)

    def test_streams_to_the_end_with_usage(self):
        stream = self.client().chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertGreaterEqual(chunks[-1]["usage"]["completion_tokens"], 1)

    def test_reads_key_and_base_url_from_the_environment(self):
        os.environ["ALVEARE_API_KEY"] = KEYS["pro"]
        os.environ["ALVEARE_BASE_URL"] = BASE_URL
        try:
            self.assertEqual(Alveare().health()["status"], "ok")
        finally:
            del os.environ["ALVEARE_API_KEY"]
            del os.environ["ALVEARE_BASE_URL"]
        with self.assertRaises(ValueError):
            Alveare()

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

    def test_retries_server_errors_with_backoff(self):
        waits = []
        with self.assertRaises(InternalServerError) as failed:
            self.client(max_retries=2, sleep=waits.append).infer(specialist="flaky", prompt="x")
        self.assertEqual(failed.exception.status, 502)
        self.assertEqual(len(waits), 2)
        self.assertTrue(0.375 <= waits[0] <= 0.5 and 0.75 <= waits[1] <= 1.0, waits)

    def test_connection_errors_are_retried_then_raised(self):
        waits = []
        with self.assertRaises(APIConnectionError):
            Alveare(api_key=KEYS["pro"], base_url="http://127.0.0.1:9", max_retries=1, sleep=waits.append).health()
        self.assertEqual(len(waits), 1)

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


class Package(unittest.TestCase):
    def test_version(self):
        self.assertEqual(alveare.__version__, "0.1.0")


if __name__ == "__main__":
    unittest.main()
