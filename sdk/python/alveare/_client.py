"""The Alveare API client: transport (auth, timeouts, retries) below, thin resources on top."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from ._errors import APIConnectionError, APIError, APITimeoutError, error_from_response
from ._retry import retry_delay, should_retry
from ._types import ChatCompletion, ChatCompletionChunk, ChatMessage, Health, InferResponse, ModelList, Usage

DEFAULT_BASE_URL = "https://api.alveare.ai"


class ChatCompletionStream:
    """A streamed chat completion: iterate for chunks; the last may carry usage. Nothing is retried once it exists."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        data: List[str] = []
        try:
            for raw in self._response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if not data:
                        continue
                    payload = "\n".join(data)
                    data = []
                    if payload == "[DONE]":
                        return
                    event = json.loads(payload)
                    if "error" in event:
                        raise error_from_response(500, event, dict(self._response.headers.items()))
                    yield event
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
        finally:
            self.close()

    def close(self) -> None:
        """Stops reading and closes the connection; the server stops generating."""
        self._response.close()

    def __enter__(self) -> "ChatCompletionStream":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Completions:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def create(self, *, model: str, messages: List[ChatMessage], stream: bool = False, **params: Any) -> Union[ChatCompletion, ChatCompletionStream]:
        body: Dict[str, Any] = {"model": model, "messages": messages, **params}
        if stream:
            body["stream"] = True
            return ChatCompletionStream(self._client._send("POST", "/v1/chat/completions", body))
        return self._client.request("POST", "/v1/chat/completions", body)


class _Chat:
    def __init__(self, client: "Alveare") -> None:
        self.completions = _Completions(client)


class _Models:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def list(self) -> ModelList:
        return self._client.request("GET", "/v1/models")


class _Usage:
    def __init__(self, client: "Alveare") -> None:
        self._client = client

    def get(self) -> Usage:
        return self._client.request("GET", "/v1/usage")


class Alveare:
    """Client for the Alveare API. The key comes from `api_key` or ALVEARE_API_KEY."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_retry_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = api_key or os.environ.get("ALVEARE_API_KEY")
        if not key:
            raise ValueError("Missing API key: pass api_key= or set ALVEARE_API_KEY.")
        self.api_key = key
        self.base_url = (base_url or os.environ.get("ALVEARE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self.chat = _Chat(self)
        self.models = _Models(self)
        self.usage = _Usage(self)

    def infer(self, *, specialist: str, prompt: str, **params: Any) -> InferResponse:
        return self.request("POST", "/v1/infer", {"specialist": specialist, "prompt": prompt, **params})

    def health(self) -> Health:
        return self.request("GET", "/health")

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """Any route, with the same auth, retries and errors."""
        with self._send(method, path, body) as response:
            return json.loads(response.read().decode("utf-8"))

    def _send(self, method: str, path: str, body: Optional[Dict[str, Any]]) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        waited = 0.0
        attempt = 0
        while True:
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                return urllib.request.urlopen(request, timeout=self.timeout)
            except urllib.error.HTTPError as http_error:
                response_headers = {k.lower(): v for k, v in http_error.headers.items()}
                try:
                    payload = json.loads(http_error.read().decode("utf-8"))
                except ValueError:
                    payload = None
                failure: APIError = error_from_response(http_error.code, payload, response_headers)
                if not should_retry(http_error.code, response_headers, failure.code):
                    raise failure from None
            except (socket.timeout, TimeoutError) as timeout_error:
                failure = APITimeoutError(f"Request timed out: {timeout_error}")
            except (urllib.error.URLError, ConnectionError, OSError) as connection_error:
                failure = APIConnectionError(f"Connection error: {connection_error}")
            if attempt >= self.max_retries:
                raise failure
            delay = retry_delay(attempt, failure.headers, self._clock())
            if waited + delay > self.max_retry_wait:
                raise failure
            waited += delay
            self._sleep(delay)
            attempt += 1
