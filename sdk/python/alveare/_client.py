"""The Alveare API client: transport (auth, timeouts, retries) below, thin resources on top."""
from __future__ import annotations

import copy
import dataclasses
import http.client
import json
import logging
import os
import platform
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    InvalidBaseURLError,
    MalformedApiKeyError,
    MissingApiKeyError,
    connection_cause,
    error_from_response,
    error_from_stream_event,
)
from ._headers import Headers
from ._version import __version__
from ._retry import retry_delay, should_retry
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionTool,
    ChatMessage,
    CreateEmbeddingResponse,
    Health,
    InferResponse,
    Modality,
    Model,
    ModelList,
    ResponseFormat,
    StreamOptions,
    ToolChoice,
    Usage,
)

DEFAULT_BASE_URL = "https://api.alveare.ai"

#: Sent with every request (instead of urllib's Python-urllib/3.x).
USER_AGENT = f"alveare-python/{__version__} python/{platform.python_version()}"

logger = logging.getLogger("alveare")


def normalize_base_url(url: str) -> str:
    """The server root: trailing slashes and one trailing /v1 dropped, so OpenAI-style URLs (…/v1) work too."""
    return re.sub(r"/+$", "", re.sub(r"/v1$", "", url.rstrip("/")))


def check_base_url(url: str, source: str) -> None:
    """Raises InvalidBaseURLError unless `url` is an absolute http:// or https:// URL with a host. Without this,
    a URL missing its scheme ("127.0.0.1:8080") is taken as something else and every call fails obscurely."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
        valid = re.match(r"(?i)https?://", url) is not None and bool(parts.hostname)
    except ValueError:
        valid = False
    if valid and (parts.query or parts.fragment or url.endswith(("?", "#"))):
        raise InvalidBaseURLError(
            f"Invalid base URL {json.dumps(url)} from {source}: it must not have a query or fragment (every path is added to it)."
        )
    if valid:
        return
    if url == "":
        hint = " (leave it out to use ALVEARE_BASE_URL or the default)"
    elif re.match(r"(?i)[a-z][a-z0-9+.-]*://", url):
        hint = ""
    else:
        hint = f" (did you mean {json.dumps('http://' + url)}?)"
    raise InvalidBaseURLError(
        f'Invalid base URL {json.dumps(url)} from {source}: it must be an http:// or https:// URL such as '
        f'"http://127.0.0.1:8080"{hint}.'
    )


def _checked_timeout(timeout: Optional[float]) -> Optional[float]:
    """`timeout` in seconds, None for no deadline; float("inf") (or a wait past what the system's timers take, about
    292 years) is no deadline too. Zero, a negative number or NaN raises ValueError: 0 made every request fail as a
    connection error (EINPROGRESS), retried; a negative one raised the socket's bare "Timeout value out of range";
    inf raised OverflowError."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(
            f"Invalid timeout {timeout!r}: it must be a number of seconds over 0, or None (or float('inf')) for no deadline."
        )
    return None if timeout > threading.TIMEOUT_MAX else float(timeout)


def _log_debug_to_stderr_if_asked() -> None:
    """ALVEARE_LOG=debug: the 'alveare' logger prints each request and retry to stderr (never the key)."""
    if os.environ.get("ALVEARE_LOG", "").lower() != "debug" or getattr(logger, "_alveare_stderr", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[alveare] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    setattr(logger, "_alveare_stderr", True)


@dataclasses.dataclass(frozen=True)
class RetryEvent:
    """What the on_retry hook is told before each wait."""

    attempt: int
    """1 for the first retry, 2 for the second …"""
    delay: float
    """Seconds the client will wait before that retry."""
    error: APIError
    """Why the previous attempt failed."""
    method: str
    url: str


class _AnswerFirstMixin:
    """A server (or a proxy in front of it) may answer a body it refuses (413) before reading it, then
    close: sending the rest fails with a broken pipe, but the answer is already there. So sending stops
    quietly and the response is read; only when there is none is the sending error raised."""

    _send_error: Optional[OSError] = None

    def send(self, data: Any) -> None:
        if self._send_error is not None:
            return
        try:
            super().send(data)  # type: ignore[misc]
        except (BrokenPipeError, ConnectionResetError) as error:
            self._send_error = error

    def getresponse(self) -> http.client.HTTPResponse:
        # The socket's timeout bounds each read, not the head as a whole: a head sent a byte at a time
        # would never time out. So the socket is shut once `timeout` has passed without the whole head.
        expired = threading.Event()
        timer: Optional[threading.Timer] = None
        timeout = getattr(self, "timeout", None)
        sock = getattr(self, "sock", None)
        if isinstance(timeout, (int, float)) and sock is not None:
            def expire() -> None:
                expired.set()
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            answer = super().getresponse()  # type: ignore[misc]
        except (OSError, http.client.HTTPException):
            if expired.is_set():
                raise socket.timeout("timed out") from None
            if self._send_error is not None:
                raise self._send_error from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        # The timer may have shut the socket just as the head came in: the body cannot be read then.
        if expired.is_set():
            raise socket.timeout("timed out")
        return answer  # type: ignore[no-any-return]


class _AnswerFirstHTTPConnection(_AnswerFirstMixin, http.client.HTTPConnection):
    pass


class _AnswerFirstHTTPSConnection(_AnswerFirstMixin, http.client.HTTPSConnection):
    pass


class _AnswerFirstHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_AnswerFirstHTTPConnection, req)


class _AnswerFirstHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_AnswerFirstHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are answered, never followed: urllib would carry the Authorization header to another
    host, and turn a POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_AnswerFirstHTTPHandler, _AnswerFirstHTTPSHandler, _NoRedirects)


def _without_none(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _socket_of(response: Any) -> Optional[socket.socket]:
    """The socket under a urllib response (HTTPResponse → buffered reader → SocketIO → socket), if reachable."""
    current = response
    for _ in range(6):
        if isinstance(current, socket.socket):
            return current
        current = getattr(current, "fp", None) or getattr(current, "raw", None) or getattr(current, "_sock", None)
        if current is None:
            return None
    return None


def _within(timeout: Optional[float]) -> str:
    """" within 60 s" for messages; "" for timeout=None (no deadline: what timed out was the system's own)."""
    return "" if timeout is None else f" within {timeout:g} s"


def _read_within(response: Any, deadline: Optional[float]) -> bytes:
    """The whole body, by `deadline` (time.monotonic()): each read may only wait for what is left of it.
    With no deadline (timeout=None) the reads wait as long as it takes."""
    sock = _socket_of(response)
    parts: List[bytes] = []
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            if sock is not None:
                sock.settimeout(remaining)
        part = response.read1(65536)
        if not part:
            missing = getattr(response, "length", None)
            if missing:  # the connection closed before the Content-Length promised had come (read1 says nothing)
                raise http.client.IncompleteRead(b"".join(parts), missing)
            return b"".join(parts)
        parts.append(part)


#: The most one stream event may hold, in characters (a line, in bytes). An Alveare event carries one piece of one
#: choice, a few KB at most; a server (or a proxy between) that never ends a line or an event would otherwise grow it
#: until the process runs out of memory.
MAX_STREAM_EVENT_CHARS = 8 * 1024 * 1024


def _json_object(data: str) -> Optional[Dict[str, Any]]:
    """An event's data as a chunk (or an error event), or None when it is not a JSON object."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class ChatCompletionStream:
    """A streamed chat completion: iterate for chunks; the last may carry usage. Nothing is retried once it exists.

    Waiting longer than the client's `timeout` for the next data raises APITimeoutError; a cut connection
    APIConnectionError.
    """

    def __init__(self, response: Any, host: str = "", timeout: Optional[float] = None) -> None:
        self._response = response
        #: The server's id for this exchange (its x-request-id), as the OpenAI SDKs give it.
        self._request_id: Optional[str] = response.headers.get("x-request-id")
        self._host = host
        self._timeout = timeout
        self._closed = False
        self._reading = False  # a for loop is reading it (close() from another thread leaves the response to it)

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        finished: Dict[int, bool] = {}  # each choice seen, by index: whether it has had its finish_reason
        # An event's data that is not a JSON object: a cut, when nothing follows it; otherwise the server's garbage.
        unreadable: Optional[str] = None
        self._reading = True
        try:
            for payload in self._events():
                if self._closed:  # close() was called (from another thread): the caller asked to stop
                    return
                if unreadable is not None:
                    raise APIError(
                        f"the stream from {self._host} sent an event whose data is not a JSON object: "
                        f"{json.dumps(unreadable[:40])}",
                        status=self._response.status, request_id=self._response.headers.get("x-request-id"),
                        headers=Headers(self._response.headers.items()),
                    )
                if payload == "[DONE]":
                    return
                event = _json_object(payload)
                if event is None:
                    unreadable = payload
                    continue
                # Some OpenAI-compatible proxies send "error": null on every chunk: that is no error. Some servers
                # send a bare string (TGI's {"error": "…"}): its message is kept.
                if event.get("error") is not None:
                    error = event if isinstance(event["error"], dict) else {"error": {"message": str(event["error"])}}
                    raise error_from_stream_event(error, Headers(self._response.headers.items()))
                for choice in event.get("choices") or ():
                    index = choice.get("index", 0)
                    finished[index] = finished.get(index, False) or choice.get("finish_reason") is not None
                yield ChatCompletionChunk.from_dict(event)
            # A complete stream ends with [DONE], a failed one with an error event. Without [DONE] (a proxy or
            # another OpenAI-compatible server may leave it out) it is complete when every choice it had has
            # finished; otherwise it was cut short. Data that does not parse at the very end is an event the cut split.
            if self._closed:
                return
            if unreadable is not None:
                raise APIConnectionError(
                    f"the stream from {self._host} ended inside an event (data that is not a JSON object: "
                    f"{json.dumps(unreadable[:40])}): the answer is incomplete")
            open_ = [str(index) for index, done in finished.items() if not done]
            if finished and not open_:
                return
            missing = ("no choice arrived" if not finished else
                       f"{'choice' if len(open_) == 1 else 'choices'} {', '.join(open_)} without a finish_reason")
            raise APIConnectionError(
                f"the stream from {self._host} ended before data: [DONE]: the answer is incomplete ({missing})")
        finally:
            self._reading = False
            self.close()

    def _events(self) -> Iterator[str]:
        """Each event's data (its `data:` lines joined), the last one also when no blank line ends it."""
        data: List[str] = []
        held = 0  # characters of the event so far
        for raw in self._lines():
            if len(raw) > MAX_STREAM_EVENT_CHARS:
                raise self._too_large()
            text = raw.decode("utf-8", errors="replace")  # as TextDecoder does in TypeScript: U+FFFD, no exception
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text
            # A lone CR also ends a line (the event-stream format allows CR, LF and CRLF; some proxies send CR).
            for line in text.split("\r"):
                if line == "":
                    if data:
                        yield "\n".join(data)
                    data = []
                    held = 0
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
                    held += len(data[-1]) + 1
                    if held > MAX_STREAM_EVENT_CHARS:
                        raise self._too_large()
        if data:
            yield "\n".join(data)

    def _too_large(self) -> APIError:
        return APIError(
            f"the stream from {self._host} sent an event over {MAX_STREAM_EVENT_CHARS} characters, more than any "
            "answer's event holds: it was read no further",
            status=self._response.status, request_id=self._response.headers.get("x-request-id"),
            headers=Headers(self._response.headers.items()),
        )

    def _lines(self) -> Iterator[bytes]:
        """The body's lines, each read up to one byte past the bound (so a line that never ends is not held whole);
        a read that times out or fails becomes the SDK's error for its cause."""
        while True:
            try:
                line = self._response.readline(MAX_STREAM_EVENT_CHARS + 1)
                if not line:
                    return
            except (socket.timeout, TimeoutError, OSError, http.client.HTTPException, ValueError) as error:
                if self._closed:  # the read close() ended
                    return
                if not isinstance(error, (socket.timeout, TimeoutError)):
                    raise APIConnectionError(
                        f"the stream from {self._host} was cut off ({connection_cause(error)})") from None
                waited = "" if self._timeout is None else f" for {self._timeout:g} s"
                raise APITimeoutError(f"no data from {self._host}{waited} while streaming") from None
            yield line

    def close(self) -> None:
        """Stops reading and closes the connection; the server stops generating. From another thread too: the
        read waiting there ends at once (closing the response alone would wait for it, up to `timeout`) and
        that thread's for loop ends without an error."""
        self._closed = True
        sock = _socket_of(self._response)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if not self._reading:
            self._response.close()

    def __enter__(self) -> "ChatCompletionStream":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Completions:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        messages: List[ChatMessage],
        stream: bool = False,
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        stop: Union[str, List[str], None] = None,
        seed: Optional[int] = None,
        stream_options: Optional[StreamOptions] = None,
        response_format: Optional[ResponseFormat] = None,
        tools: Optional[List[ChatCompletionTool]] = None,
        tool_choice: Optional[ToolChoice] = None,
        parallel_tool_calls: Optional[bool] = None,
        n: Optional[int] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        logit_bias: Optional[Dict[str, float]] = None,
        user: Optional[str] = None,
        store: Optional[bool] = None,
        metadata: Optional[Dict[str, str]] = None,
        modalities: Optional[List[Modality]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
    ) -> Union[ChatCompletion, ChatCompletionStream]:
        """An OpenAI-style chat completion; `stream=True` returns a ChatCompletionStream.

        Parameters left as None are not sent. `extra_body` adds fields newer than this SDK.
        `frequency_penalty`, `presence_penalty` (-2..2), `logit_bias` (token ids as digit strings to -100..100),
        `user`, `store` and `metadata` (at most 16 string values) are checked by the server as OpenAI checks them,
        then ignored: nothing is stored. `modalities` takes ["text"] only. Not taken, as the server refuses them:
        `audio`, and OpenAI's deprecated `functions` and `function_call` (pass `tools` and `tool_choice`).
        """
        body: Dict[str, Any] = _without_none({
            "model": model, "messages": messages, "max_tokens": max_tokens,
            "max_completion_tokens": max_completion_tokens, "temperature": temperature, "top_p": top_p,
            "stop": stop, "seed": seed, "stream_options": stream_options, "response_format": response_format,
            "tools": tools, "tool_choice": tool_choice, "parallel_tool_calls": parallel_tool_calls,
            "n": n, "logprobs": logprobs, "top_logprobs": top_logprobs,
            "frequency_penalty": frequency_penalty, "presence_penalty": presence_penalty, "logit_bias": logit_bias,
            "user": user, "store": store, "metadata": metadata, "modalities": modalities,
        })
        body.update(extra_body or {})
        if stream:
            body["stream"] = True
            client = self._client
            return ChatCompletionStream(client._send("POST", "/v1/chat/completions", body, stream=True), client._host, client.timeout)
        return self._client._typed(ChatCompletion, "POST", "/v1/chat/completions", body)


class _Chat:
    def __init__(self, client: "Alveare") -> None:
        self.completions = _Completions(client)


class _Embeddings:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        input: Union[str, List[str]],  # noqa: A002 - OpenAI's parameter name
        encoding_format: Optional[str] = None,
        dimensions: Optional[int] = None,
        user: Optional[str] = None,
        extra_body: Optional[Dict[str, Any]] = None,
    ) -> CreateEmbeddingResponse:
        """Embedding vectors (POST /v1/embeddings) in OpenAI's shape; `dimensions` truncates and renormalises.
        `user` (OpenAI's end-user id) is checked by the server, then ignored. `extra_body` adds fields newer than this SDK."""
        body = _without_none({"model": model, "input": input, "encoding_format": encoding_format, "dimensions": dimensions, "user": user})
        body.update(extra_body or {})
        return self._client._typed(CreateEmbeddingResponse, "POST", "/v1/embeddings", body)


class _Models:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def list(self) -> ModelList:
        return self._client._typed(ModelList, "GET", "/v1/models")

    def retrieve(self, model: str) -> Model:
        """One model of the list by id ("alveare-chat"); NotFoundError for one the key's list does not show."""
        return self._client._typed(Model, "GET", "/v1/models/" + urllib.parse.quote(model, safe=""))


class _Usage:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def get(self) -> Usage:
        return self._client._typed(Usage, "GET", "/v1/usage")


#: with_options' default: the setting is this client's.
_SAME: Any = object()


class Alveare:
    """Client for the Alveare API.

    The key comes from `api_key`, then ALVEARE_API_KEY; the server from `base_url`, then
    ALVEARE_BASE_URL (when set and not empty), then https://api.alveare.ai (with or without a trailing
    /v1). base_url="" raises InvalidBaseURLError.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        # Ten minutes, as the OpenAI SDKs: a long answer from a small model on a CPU takes minutes, and a call
        # that timed out is retried as a new generation, billed again.
        timeout: Optional[float] = 600.0,
        max_retries: int = 2,
        max_retry_wait: float = 120.0,
        on_retry: Optional[Callable[[RetryEvent], None]] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Only a missing key falls back to the variable: api_key="" is a mistake to report, as in TypeScript.
        key = os.environ.get("ALVEARE_API_KEY") if api_key is None else api_key
        # A line break pasted with the key is dropped; anything else a header cannot carry is refused here, not sent.
        key = key.strip() if key else key
        if not key:
            raise MissingApiKeyError()
        if not re.fullmatch(r"[\x21-\x7e]+", key):
            raise MalformedApiKeyError()
        self.api_key = key
        # As with api_key: only a missing base_url falls back (base_url="" is a mistake to report, as in
        # TypeScript); an empty ALVEARE_BASE_URL counts as unset.
        # As with the key, whitespace around the URL (a pasted line break, a space left in a .env file) is dropped:
        # kept, it passed the check and then broke every request (a raw ValueError, or a path of "/v1 /…").
        from_env = os.environ.get("ALVEARE_BASE_URL", "").strip()
        if base_url is not None:
            url, source = base_url.strip(), "base_url="
        elif from_env:
            url, source = from_env, "ALVEARE_BASE_URL"
        else:
            url, source = DEFAULT_BASE_URL, "the default"
        check_base_url(url, source)
        self.base_url = normalize_base_url(url)
        # Said when a connection fails: a self-hosted key sent to the hosted default needs base_url.
        self._host_hint = (
            "; no base_url was given, so this is the hosted service: for your own server pass base_url or set ALVEARE_BASE_URL"
            if source == "the default" else ""
        )
        self.timeout = _checked_timeout(timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._on_retry = on_retry
        self._sleep = sleep
        self._clock = clock
        self._host = urllib.parse.urlsplit(self.base_url).netloc or self.base_url
        _log_debug_to_stderr_if_asked()
        self.chat = _Chat(self)
        self.models = _Models(self)
        self.embeddings = _Embeddings(self)
        self.usage = _Usage(self)

    def __repr__(self) -> str:
        return f"Alveare(base_url={self.base_url!r})"

    def with_options(self, *, timeout: Any = _SAME, max_retries: Any = _SAME) -> "Alveare":
        """A client like this one with another `timeout` and/or `max_retries`, for one call or a few, as in the
        OpenAI SDK: `client.with_options(timeout=5, max_retries=0).infer(...)`. This client is unchanged."""
        other = copy.copy(self)
        if timeout is not _SAME:
            other.timeout = _checked_timeout(timeout)
        if max_retries is not _SAME:
            other.max_retries = max_retries
        other.chat = _Chat(other)
        other.models = _Models(other)
        other.embeddings = _Embeddings(other)
        other.usage = _Usage(other)
        return other

    def infer(
        self,
        *,
        specialist: str,
        prompt: str,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        extra_body: Optional[Dict[str, Any]] = None,
    ) -> InferResponse:
        """One answer from a specialist. Parameters left as None are not sent; `extra_body` adds newer fields."""
        body = _without_none({
            "specialist": specialist, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": temperature, "top_p": top_p, "seed": seed,
        })
        body.update(extra_body or {})
        return self._typed(InferResponse, "POST", "/v1/infer", body)

    def health(self) -> Health:
        return self._typed(Health, "GET", "/health")

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """Any route, with the same auth, retries and errors; returns the parsed JSON as plain dicts."""
        return self._json(method, path, body)[0]

    def _json(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """(parsed JSON, request id) of a successful answer."""
        content, status, headers = self._send(method, path, body)
        try:
            return json.loads(content.decode("utf-8")), headers.get("x-request-id")
        except ValueError:
            raise APIError(
                f"the server answered HTTP {status} with a body that is not JSON", status=status,
                request_id=headers.get("x-request-id"), headers=headers,
            ) from None

    def _typed(self, kind: Any, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """The answer as `kind`, with the server's id for the exchange as `_request_id` (as the OpenAI SDKs give it)."""
        data, request_id = self._json(method, path, body)
        answer = kind.from_dict(data)
        # Not a field: equality, repr and to_dict() leave it out. The types are frozen dataclasses.
        object.__setattr__(answer, "_request_id", request_id)
        return answer

    def _send(self, method: str, path: str, body: Optional[Dict[str, Any]], stream: bool = False) -> Any:
        """(body, status, headers) of a successful answer, its body read in full; with `stream`, the open response.

        `timeout` covers each attempt whole: the wait for the answer and the reading of its body
        (a stream's body is read with `timeout` as the longest wait for more data instead)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        waited = 0.0
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            started = time.monotonic()
            status: Optional[int] = None  # the answer's, once its head has arrived
            try:
                try:
                    response = _opener.open(request, timeout=self.timeout)
                except urllib.error.HTTPError as http_error:
                    response = http_error
                status = response.code
                self._log_exchange(method, url, status, started, response.headers.get("x-request-id"))
                if 300 <= status < 400:
                    response.close()
                    location = response.headers.get("location")
                    raise APIError(
                        f"the server answered with a redirect{f' to {location}' if location else ''}, which this SDK "
                        "does not follow (it would carry your key there): set base_url to the address that answers",
                        status=status, type="invalid_request_error", code="redirected",
                        request_id=response.headers.get("x-request-id"), headers=Headers(response.headers.items()),
                    ) from None
                if 200 <= status < 300 and stream:
                    return response
                with response:
                    content = _read_within(response, None if self.timeout is None else started + self.timeout)
                response_headers = Headers(response.headers.items())
                if 200 <= status < 300:
                    return content, status, response_headers
                try:
                    payload = json.loads(content.decode("utf-8"))
                except ValueError:
                    payload = None
                failure: APIError = error_from_response(status, payload, response_headers)
                if not should_retry(status, response_headers, failure.code):
                    raise failure from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as connection_error:
                # The server records a request as served before it sends a 2xx: a POST whose 2xx body then
                # fails was most likely served (and billed), so it is not retried. A GET is safe to send again.
                served = status is not None and 200 <= status < 300 and method != "GET"
                note = (f"; the server had answered {status}, so the request was most likely served (and billed): "
                        "not retried") if served else ""
                if isinstance(connection_error, (socket.timeout, TimeoutError)) or isinstance(
                    getattr(connection_error, "reason", None), (socket.timeout, TimeoutError)
                ):
                    failure = APITimeoutError(
                        f"the response from {self._host} did not arrive in full{_within(self.timeout)}{note}"
                        if status is not None else f"no response from {self._host}{_within(self.timeout)}"
                    )
                elif status is not None:
                    failure = APIConnectionError(
                        f"the response from {self._host} was cut off ({connection_cause(connection_error)}){note}")
                else:
                    failure = APIConnectionError(
                        f"could not connect to {self._host} ({connection_cause(connection_error)}){self._host_hint}")
                logger.debug("%s %s failed in %d ms: %s", method, url, (time.monotonic() - started) * 1000, failure)
                if served:
                    raise failure from None
            if attempt >= self.max_retries:
                raise failure
            delay = retry_delay(attempt, failure.headers, self._clock())
            if delay is None or waited + delay > self.max_retry_wait:
                raise failure
            waited += delay
            event = RetryEvent(attempt=attempt + 1, delay=delay, error=failure, method=method, url=url)
            logger.debug(
                "retry %d of %d for %s %s in %d ms after %s%s: %s", event.attempt, self.max_retries, method, url,
                delay * 1000, type(failure).__name__, "" if failure.status is None else f" {failure.status}", failure,
            )
            if self._on_retry is not None:
                self._on_retry(event)
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _log_exchange(method: str, url: str, status: int, started: float, request_id: Optional[str]) -> None:
        suffix = f" ({request_id})" if request_id else ""
        logger.debug("%s %s -> %d in %d ms%s", method, url, status, (time.monotonic() - started) * 1000, suffix)
