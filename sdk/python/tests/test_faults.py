"""The client against a scripted server (tests/_scripted.py) that misbehaves on cue: stalls, cuts, error events."""
import json
import platform
import re
import socket
import threading
import time
import unittest
from pathlib import Path
from typing import List

import alveare

from alveare import (
    Alveare,
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    ChatCompletionStream,
    InternalServerError,
    RateLimitError,
    should_retry,
)
from alveare._errors import error_from_response

from ._scripted import ScriptedApi, chunk_event, error_body, error_event, hold, response, stream_head


class Faults(unittest.TestCase):
    def setUp(self):
        self.api = ScriptedApi()

    def tearDown(self):
        self.api.close()

    def client(self, **options):
        return Alveare(api_key="k", base_url=self.api.url, **options)

    def test_a_post_whose_2xx_body_stalls_or_is_cut_is_not_retried_as_it_was_served(self):
        def stall(conn, seen):
            conn.sendall(response(200, b'{"resu', length=20))  # 6 of 20 bytes, then nothing
            hold(conn)

        self.api.script = stall
        retried = []
        started = time.monotonic()
        with self.assertRaises(APITimeoutError) as timed_out:
            self.client(timeout=1, max_retries=2, sleep=lambda s: None, on_retry=retried.append).infer(specialist="s", prompt="p")
        took = time.monotonic() - started
        self.assertRegex(str(timed_out.exception), r"^the response from 127\.0\.0\.1:\d+ did not arrive in full within 1 s; "
                         r"the server had answered 200, so the request was most likely served \(and billed\): not retried$")
        self.assertEqual(retried, [])
        self.assertEqual(len(self.api.requests), 1)
        self.assertTrue(0.5 <= took < 5, took)

        # Cut: the connection closes before the Content-Length promised has come.
        self.api.script = lambda conn, seen: conn.sendall(response(200, b'{"resu', length=20))
        with self.assertRaises(APIConnectionError) as cut:
            self.client(max_retries=2, sleep=lambda s: None, on_retry=retried.append).infer(specialist="s", prompt="p")
        self.assertNotIsInstance(cut.exception, APITimeoutError)
        self.assertRegex(str(cut.exception), r"^the response from 127\.0\.0\.1:\d+ was cut off \(.+\); the server had answered 200, "
                         r"so the request was most likely served")
        self.assertEqual(retried, [])
        self.assertEqual(len(self.api.requests), 2)

    def test_a_get_whose_2xx_body_stalls_and_a_cut_error_answer_are_retried(self):
        def stall(conn, seen):
            conn.sendall(response(200, b'{"stat', length=20))
            hold(conn)

        self.api.script = stall
        retried = []
        with self.assertRaises(APITimeoutError) as timed_out:
            self.client(timeout=0.5, max_retries=1, sleep=lambda s: None, on_retry=retried.append).health()
        self.assertRegex(str(timed_out.exception), r"^the response from 127\.0\.0\.1:\d+ did not arrive in full within 0\.5 s$")
        self.assertEqual([type(e.error) for e in retried], [APITimeoutError])
        self.assertEqual(len(self.api.requests), 2)
        # A 503 whose body is cut was not served: the POST is retried.
        self.api.script = lambda conn, seen: conn.sendall(response(503, b'{"err', length=50))
        with self.assertRaises(APIConnectionError) as cut:
            self.client(max_retries=1, sleep=lambda s: None).infer(specialist="s", prompt="p")
        self.assertNotIn("served", str(cut.exception))
        self.assertEqual(len(self.api.requests), 4)

    def test_a_body_that_trickles_is_timed_out_as_a_whole(self):
        def trickle(conn, seen):
            conn.sendall(response(200, b"", length=40))
            for _ in range(40):  # a byte every 0.1 s: 4 s in all, never silent for long
                time.sleep(0.1)
                conn.sendall(b" ")

        self.api.script = trickle
        started = time.monotonic()
        with self.assertRaises(APITimeoutError):
            self.client(timeout=1, max_retries=0).infer(specialist="s", prompt="p")
        self.assertLess(time.monotonic() - started, 3)  # about 1 s; the trickle would take 4

    def test_a_stream_that_sends_nothing_for_the_timeout_raises_api_timeout_error(self):
        def stalls_mid_stream(conn, seen):
            conn.sendall(stream_head() + chunk_event("one"))
            time.sleep(0.3)  # within the timeout
            conn.sendall(chunk_event(" two"))
            hold(conn)

        self.api.script = stalls_mid_stream
        stream = self.client(timeout=0.6).chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "x"}], stream=True)
        text = ""
        started = time.monotonic()
        with self.assertRaises(APITimeoutError) as timed_out:
            for chunk in stream:
                text += chunk.choices[0].delta.content
        self.assertEqual(text, "one two")
        self.assertRegex(str(timed_out.exception), r"no data from 127\.0\.0\.1:\d+ for 0\.6 s while streaming")
        took = time.monotonic() - started  # about 0.9 s (the second chunk at 0.3, then 0.6 of silence)
        self.assertTrue(0.45 <= took < 5, took)

    def test_timeout_none_means_no_deadline(self):
        def slow(conn, seen):
            conn.sendall(response(200, b'{"id": "inf_1", "result": "po', length=len(b'{"id": "inf_1", "result": "positive"}')))
            time.sleep(0.2)
            conn.sendall(b'sitive"}')

        self.api.script = slow
        self.assertEqual(self.client(timeout=None).infer(specialist="s", prompt="p").result, "positive")
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("whole") + b"data: [DONE]\n\n")
        self.assertEqual(self.stream_text(timeout=None), ("whole", None))

        # What times out then is the system's own wait (TCP): the message says so without a number.
        class TimesOut:
            headers: dict = {}

            def readline(self, limit=-1):
                raise socket.timeout("timed out")

            def close(self):
                pass

        with self.assertRaises(APITimeoutError) as timed_out:
            list(ChatCompletionStream(TimesOut(), "h:1", None))
        self.assertEqual(str(timed_out.exception), "no data from h:1 while streaming")

    def test_an_infinite_or_huge_timeout_is_no_deadline_and_zero_negative_or_nan_is_refused(self):
        self.api.script = lambda conn, seen: conn.sendall(response(200, b'{"id": "inf_1", "result": "positive"}'))
        for timeout in (float("inf"), 1e10, 10**12):
            client = self.client(timeout=timeout, max_retries=0)
            self.assertIsNone(client.timeout, timeout)
            self.assertEqual(client.infer(specialist="s", prompt="p").result, "positive", timeout)
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("whole") + b"data: [DONE]\n\n")
        self.assertEqual(self.stream_text(timeout=float("inf")), ("whole", None))
        self.assertEqual(self.client(timeout=5).timeout, 5.0)
        for timeout in (0, -1, float("nan"), True, "60"):
            with self.assertRaises(ValueError) as refused:
                self.client(timeout=timeout)
            self.assertIn("over 0, or None", str(refused.exception))

    def stream_text(self, **options):
        """(text, error) of one streamed completion read to its end."""
        text = ""
        try:
            for chunk in self.client(**options).chat.completions.create(
                    model="alveare-chat", messages=[{"role": "user", "content": "x"}], stream=True):
                text += "".join(choice.delta.content or "" for choice in chunk.choices)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            return text, error
        return text, None

    def test_a_stream_that_ends_before_done_raises_api_connection_error(self):
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("one") + chunk_event(" two"))
        text, error = self.stream_text()
        self.assertEqual(text, "one two")
        self.assertIsInstance(error, APIConnectionError)
        self.assertRegex(str(error), r"^the stream from 127\.0\.0\.1:\d+ ended before data: \[DONE\]")

    def test_a_stream_cut_inside_an_event_raises_api_connection_error_and_a_non_json_event_an_api_error(self):
        # The connection closes in the middle of the second event: no JSONDecodeError, an incomplete answer.
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("one") + chunk_event(" two")[:40])
        text, error = self.stream_text()
        self.assertEqual(text, "one")
        self.assertIsInstance(error, APIConnectionError)
        self.assertRegex(str(error), r"^the stream from 127\.0\.0\.1:\d+ ended inside an event .*: the answer is incomplete$")

        for garbage in (b"<html>502 Bad Gateway</html>", b"null", b"[1]"):
            self.api.script = lambda conn, seen: conn.sendall(
                stream_head({"X-Request-Id": "req_garbage"}) + chunk_event("half") + b"data: " + garbage + b"\n\n"
                + chunk_event("", "stop") + b"data: [DONE]\n\n")
            text, error = self.stream_text()
            self.assertEqual(text, "half")
            self.assertIsInstance(error, alveare.APIError, garbage)
            self.assertNotIsInstance(error, APIConnectionError, garbage)
            self.assertEqual((error.status, error.request_id), (200, "req_garbage"))
            self.assertRegex(str(error), "sent an event whose data is not a JSON object")

    def test_a_stream_whose_line_or_event_outgrows_8_mi_characters_raises_api_error_not_memory_without_end(self):
        mib = b"a" * (1024 * 1024)
        # 12 MiB each: one data line never ended, or 12 data lines of one event never ended by a blank line.
        for what, pieces in (("a line that never ends", [b"data: " + mib] + [mib] * 11),
                             ("an event of many data lines", [b"data: " + mib + b"\n"] * 12)):
            def endless(conn, seen, pieces=pieces):
                conn.sendall(stream_head({"X-Request-Id": "req_endless"}) + chunk_event("half"))
                try:
                    for piece in pieces:
                        conn.sendall(piece)
                except OSError:  # the client stopped reading and closed
                    return
                hold(conn)  # only the bound ends the stream

            self.api.script = endless
            started = time.monotonic()
            text, error = self.stream_text(timeout=5)
            self.assertEqual(text, "half", what)
            self.assertIsInstance(error, alveare.APIError, what)
            self.assertNotIsInstance(error, APIConnectionError, what)
            self.assertEqual((error.status, error.request_id), (200, "req_endless"))
            self.assertRegex(str(error), r"^the stream from 127\.0\.0\.1:\d+ sent an event over 8388608 characters, more than any "
                             r"answer's event holds: it was read no further$")
            self.assertLess(time.monotonic() - started, 4, what)

    def test_close_from_another_thread_ends_the_stream_at_once(self):
        held_for: List[float] = []

        def script(conn, seen):
            conn.sendall(stream_head() + chunk_event("one"))
            started = time.monotonic()
            hold(conn, 10)  # silent until the client closes the connection
            held_for.append(time.monotonic() - started)

        self.api.script = script
        stream = self.client(timeout=5).chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "x"}], stream=True)
        close_took: List[float] = []

        def close_soon():
            time.sleep(0.3)
            started = time.monotonic()
            stream.close()
            close_took.append(time.monotonic() - started)

        closer = threading.Thread(target=close_soon)
        closer.start()
        started = time.monotonic()
        texts = [chunk.choices[0].delta.content for chunk in stream]  # ends without an error
        elapsed = time.monotonic() - started
        closer.join()
        self.assertEqual(texts, ["one"])
        self.assertLess(elapsed, 2, "the for loop ended when close() was called, not at the timeout")
        self.assertLess(close_took[0], 1)
        for _ in range(100):
            if held_for:
                break
            time.sleep(0.02)
        self.assertLess(held_for[0], 2, "the server saw the connection close")

    def test_an_error_answer_whose_error_is_a_bare_string_keeps_it_as_the_message(self):
        self.api.script = lambda conn, seen: conn.sendall(
            response(503, json.dumps({"error": "Model is overloaded", "error_type": "overloaded"}).encode()))
        with self.assertRaises(InternalServerError) as caught:
            self.client(max_retries=0).infer(specialist="s", prompt="p")
        self.assertEqual((caught.exception.status, str(caught.exception), caught.exception.code), (503, "Model is overloaded", None))
        self.api.script = lambda conn, seen: conn.sendall(response(500, b'{"error": null}'))
        with self.assertRaises(InternalServerError) as bare:
            self.client(max_retries=0).infer(specialist="s", prompt="p")
        self.assertEqual(str(bare.exception), "HTTP 500")

    def test_a_byte_that_is_not_utf_8_in_a_stream_reads_as_the_replacement_character(self):
        # As the TypeScript SDK reads it (TextDecoder); it raised UnicodeDecodeError from the for loop.
        event = chunk_event("caf\u00e9", "stop").replace("\\u00e9".encode(), b"\xe9")
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + event + b"data: [DONE]\n\n")
        self.assertEqual(self.stream_text(), ("caf\ufffd", None))

    def test_a_stream_whose_lines_end_in_cr_alone_is_read_as_with_lf(self):
        events = (chunk_event("one") + chunk_event(" two", "stop") + b"data: [DONE]\n\n").replace(b"\n", b"\r")
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + events)
        self.assertEqual(self.stream_text(), ("one two", None))

    def test_a_stream_without_done_ends_quietly_when_every_choice_has_its_finish_reason(self):
        usage = b"data: " + json.dumps({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
                                        "model": "alveare-chat", "choices": [],
                                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode() + b"\n\n"
        # Finished, then usage, but no [DONE]: as some OpenAI-compatible servers and proxies send it.
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("one") + chunk_event("", "stop") + usage)
        self.assertEqual(self.stream_text(), ("one", None))

        self.api.script = lambda conn, seen: conn.sendall(
            stream_head() + chunk_event("a", None, 0) + chunk_event("b", None, 1) + chunk_event("", "stop", 0))
        text, error = self.stream_text()
        self.assertEqual(text, "ab")
        self.assertIsInstance(error, APIConnectionError)
        self.assertRegex(str(error), r"ended before data: \[DONE\]: the answer is incomplete \(choice 1 without a finish_reason\)$")

        self.api.script = lambda conn, seen: conn.sendall(stream_head() + b": nothing\n\n")
        _, error = self.stream_text()
        self.assertIsInstance(error, APIConnectionError)
        self.assertRegex(str(error), r"the answer is incomplete \(no choice arrived\)$")

    def test_done_and_error_events_still_end_a_stream_as_before(self):
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("whole") + b"data: [DONE]\n\n")
        self.assertEqual(self.stream_text(), ("whole", None))
        # How the server ends a failed stream: the error event, then the connection closes.
        self.api.script = lambda conn, seen: conn.sendall(stream_head() + chunk_event("half") + error_event("internal_error"))
        text, error = self.stream_text()
        self.assertEqual(text, "half")
        self.assertIsInstance(error, InternalServerError)
        self.assertEqual(error.code, "internal_error")

    def test_header_names_are_looked_up_whatever_their_case(self):
        # A proxy (or the server) may send X-Request-Id capitalised: the stream's error event keeps it.
        self.api.script = lambda conn, seen: conn.sendall(
            stream_head({"X-Request-Id": "req_Capital"}) + chunk_event("half") + error_event("internal_error"))
        _, error = self.stream_text()
        self.assertIsInstance(error, InternalServerError)
        self.assertEqual(error.request_id, "req_Capital")
        self.assertEqual(error.headers["x-request-id"], "req_Capital")
        self.assertEqual(error.headers.get("X-REQUEST-ID"), "req_Capital")
        # Still the dict earlier versions gave (names lower-cased): json.dumps, copy() and dict methods work.
        self.assertIsInstance(error.headers, dict)
        self.assertEqual(json.loads(json.dumps(error.headers))["x-request-id"], "req_Capital")
        copied = error.headers.copy()
        copied["X-Extra"] = "1"
        self.assertEqual((copied["x-extra"], copied.get("X-Request-Id")), ("1", "req_Capital"))
        self.assertNotIn("x-extra", error.headers)
        self.assertEqual(dict(error.headers)["content-type"], "text/event-stream")
        # And so does every other lookup: an answer's error, the retry rules, retry_after_ms.
        self.api.script = lambda conn, seen: conn.sendall(response(
            503, error_body("overloaded"), {"X-Request-Id": "req_Upper", "X-Should-Retry": "false"}))
        with self.assertRaises(InternalServerError) as refused:
            self.client(max_retries=2, sleep=lambda s: None).infer(specialist="s", prompt="p")
        self.assertEqual(refused.exception.request_id, "req_Upper")
        self.assertEqual(len(self.api.requests) - 1, 1, "x-should-retry: false was heard: one request")
        limited = error_from_response(429, {"error": {"code": "rate_limit_exceeded"}}, {"Retry-After-Ms": "1500", "X-Request-Id": "req_1"})
        self.assertIsInstance(limited, RateLimitError)
        self.assertEqual((limited.retry_after_ms, limited.request_id), (1500, "req_1"))
        self.assertFalse(should_retry(503, {"X-Should-Retry": "false"}, None))

    def test_a_streams_error_event_has_the_class_and_status_its_code_implies(self):
        for code, type_, cls, status in (
            ("overloaded", "server_error", InternalServerError, 503),
            ("dependency_unavailable", "server_error", InternalServerError, 503),
            ("rate_limit_exceeded", "rate_limit_error", RateLimitError, 429),
            ("upstream_error", "server_error", InternalServerError, 502),
            ("internal_error", "server_error", InternalServerError, 500),
            ("invalid_parameter", "invalid_request_error", BadRequestError, 400),
            ("something_newer", "server_error", InternalServerError, 500),
        ):
            self.api.script = lambda conn, seen: conn.sendall(
                stream_head({"x-request-id": "req_stream"}) + chunk_event("half") + error_event(code, type_))
            _, error = self.stream_text()
            self.assertIsInstance(error, cls, code)
            self.assertEqual((error.status, error.code, error.type, error.request_id), (status, code, type_, "req_stream"))

    def test_a_429_whose_retry_after_is_longer_than_the_client_waits_is_raised_at_once(self):
        self.api.script = lambda conn, seen: conn.sendall(
            response(429, error_body("rate_limit_exceeded", "rate_limit_error"), {"Retry-After": "120"}))
        retries = []
        with self.assertRaises(RateLimitError) as limited:
            self.client(max_retries=2, sleep=lambda s: None, on_retry=retries.append).infer(specialist="s", prompt="p")
        self.assertEqual(limited.exception.retry_after_ms, 120000)
        self.assertEqual(retries, [])
        self.assertEqual(len(self.api.requests), 1)

    def test_sends_user_agent_alveare_python_with_the_version(self):
        pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
        version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
        self.assertEqual(alveare.__version__, version)
        self.api.script = lambda conn, seen: conn.sendall(response(200, b'{"status": "ok"}'))
        self.client().health()
        self.assertEqual(self.api.requests[-1].headers["user-agent"], f"alveare-python/{version} python/{platform.python_version()}")


if __name__ == "__main__":
    unittest.main()


class KeysRedirectsAndOddAnswers(unittest.TestCase):
    def setUp(self):
        self.api = ScriptedApi()

    def tearDown(self):
        self.api.close()

    def test_a_key_with_a_pasted_line_break_is_trimmed_and_one_a_header_cannot_carry_is_refused_without_echoing_it(self):
        self.assertEqual(Alveare(api_key="alv_live_abc\n", base_url=self.api.url).api_key, "alv_live_abc")
        for key in ["alv_live_a\r\nX-Injected: 1", "alv_live_cl\u00e9", "alv live"]:
            with self.assertRaises(alveare.MalformedApiKeyError) as refused:
                Alveare(api_key=key, base_url=self.api.url)
            self.assertIsInstance(refused.exception, alveare.AuthenticationError)
            self.assertNotIn("alv_live", str(refused.exception))
            self.assertNotIn("alv_live", repr(refused.exception))

    def test_a_redirect_is_never_followed_and_nothing_reaches_where_it_points(self):
        elsewhere = ScriptedApi()
        try:
            for status in (301, 302, 307, 308):
                self.api.script = lambda conn, seen, status=status: conn.sendall(
                    response(status, b"", {"Location": f"{elsewhere.url}/v1/infer"}))
                before = len(self.api.requests)
                with self.assertRaises(alveare.APIError) as redirected:
                    Alveare(api_key="k", base_url=self.api.url, max_retries=2, sleep=lambda s: None).infer(specialist="s", prompt="p")
                self.assertEqual(redirected.exception.status, status)
                self.assertEqual(redirected.exception.code, "redirected")
                self.assertIn(f"redirect to {elsewhere.url}/v1/infer, which this SDK does not follow", str(redirected.exception))
                self.assertEqual(len(self.api.requests) - before, 1, "not retried")
            self.assertEqual(elsewhere.requests, [])
        finally:
            elsewhere.close()

    def test_a_2xx_that_is_not_json_is_an_api_error_and_a_streams_null_error_is_no_error(self):
        self.api.script = lambda conn, seen: conn.sendall(
            response(200, b"<html>a captive portal</html>", {"Content-Type": "text/html", "X-Request-Id": "req_portal"}))
        with self.assertRaises(alveare.APIError) as not_json:
            Alveare(api_key="k", base_url=self.api.url).health()
        self.assertIn("not JSON", str(not_json.exception))
        # What the TypeScript SDK gives too: the status, request id and headers of the answer.
        self.assertEqual((not_json.exception.status, not_json.exception.request_id), (200, "req_portal"))
        self.assertEqual(not_json.exception.headers["content-type"], "text/html")

        def with_null_error(content, finish):
            chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "alveare-chat", "error": None,
                     "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        self.api.script = lambda conn, seen: conn.sendall(
            stream_head() + with_null_error("one ", None) + with_null_error("two", "stop") + b"data: [DONE]\n\n")
        stream = Alveare(api_key="k", base_url=self.api.url).chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "x"}], stream=True)
        self.assertEqual("".join(chunk.choices[0].delta.content or "" for chunk in stream), "one two")
        # A bare string error (TGI's {"error": "…"}) still ends the stream, with its message.
        self.api.script = lambda conn, seen: conn.sendall(
            stream_head() + chunk_event("half") + b"data: " + json.dumps({"error": "Input validation error: too long"}).encode() + b"\n\n")
        failing = Alveare(api_key="k", base_url=self.api.url).chat.completions.create(
            model="alveare-chat", messages=[{"role": "user", "content": "x"}], stream=True)
        with self.assertRaises(alveare.APIError) as ended:
            for _ in failing:
                pass
        self.assertEqual(str(ended.exception), "Input validation error: too long")

    def test_an_invalid_retry_after_ms_leaves_the_wait_to_retry_after(self):
        for bad in ("-5", "nan", "inf", "soon"):
            self.assertEqual(alveare.server_delay_ms({"retry-after-ms": bad, "retry-after": "1"}, 0.0), 1000.0, bad)


class HeadTimeout(unittest.TestCase):
    def setUp(self):
        self.api = ScriptedApi()

    def tearDown(self):
        self.api.close()

    def test_a_head_sent_a_byte_at_a_time_is_timed_out_as_a_whole(self):
        def trickle(conn, seen):
            for byte in response(200, b'{"status":"ok"}'):
                conn.sendall(bytes([byte]))
                time.sleep(0.1)

        self.api.script = trickle
        started = time.monotonic()
        with self.assertRaises(APITimeoutError):
            Alveare(api_key="k", base_url=self.api.url, timeout=1, max_retries=0).health()
        self.assertLess(time.monotonic() - started, 3)
