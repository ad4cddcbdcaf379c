"""One exception class per status, carrying the server's error fields and the request id."""
from __future__ import annotations

import errno
import socket
import time
from typing import Any, Mapping, Optional

from ._headers import Headers, as_headers
from ._retry import server_delay_ms


class AlveareError(Exception):
    """Base of every error this package raises."""


class APIError(AlveareError):
    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        type: Optional[str] = None,
        code: Optional[str] = None,
        param: Optional[str] = None,
        request_id: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        #: The response's header fields, looked up whatever the case of their names.
        self.headers: Headers = Headers(headers)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class BadRequestError(APIError): ...
class AuthenticationError(APIError): ...
class PermissionDeniedError(APIError): ...
class NotFoundError(APIError): ...
class ConflictError(APIError): ...
class RequestTooLargeError(APIError): ...
class UnprocessableEntityError(APIError): ...
class RateLimitError(APIError):
    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        #: How long the server asked to wait, in ms (retry-after-ms, else Retry-After); None when it did not say.
        self.retry_after_ms: Optional[float] = server_delay_ms(self.headers, time.time())


class InternalServerError(APIError): ...


class APIConnectionError(APIError):
    """No complete answer: the connection failed before an HTTP answer (refused, reset, DNS), the answer's
    body was cut off, or a stream was cut off or ended incomplete (without data: [DONE] while a choice had
    not finished). The message names the host and the cause; `status` is None."""


class APITimeoutError(APIConnectionError):
    """The timeout ran out: no answer, or not the whole body, within `timeout` (a stalled or trickling
    body), or a stream sent nothing for `timeout` seconds."""


class MissingApiKeyError(AuthenticationError, ValueError):
    """No api_key= and no ALVEARE_API_KEY: raised by the constructor, before any request.

    Also a ValueError, which is what earlier versions raised.
    """

    def __init__(self) -> None:
        super().__init__(
            "Missing API key: pass api_key= or set ALVEARE_API_KEY.",
            type="authentication_error",
            code="missing_api_key",
        )


class MalformedApiKeyError(AuthenticationError, ValueError):
    """The key holds characters an HTTP header cannot carry (spaces, line breaks, non-ASCII): raised by the
    constructor, before any request, and never with the key in its message."""

    def __init__(self) -> None:
        super().__init__(
            "The API key holds characters an HTTP header cannot carry (spaces, line breaks or non-ASCII letters): "
            "copy it again.",
            type="authentication_error",
            code="invalid_api_key",
        )


class InvalidBaseURLError(AlveareError, ValueError):
    """The base URL (base_url=, else ALVEARE_BASE_URL) is not an http:// or https:// URL: raised by the
    constructor, before any request. An AlveareError (and a ValueError), not an APIError: no call was made."""


def connection_cause(error: BaseException) -> str:
    """The most specific reason a request got no answer: the errno name (ECONNREFUSED …) when there is one."""
    reason: BaseException = error
    while True:
        inner = getattr(reason, "reason", None)
        if isinstance(inner, BaseException):
            reason = inner
        elif isinstance(inner, str) and inner:
            return inner
        else:
            break
    if isinstance(reason, socket.gaierror):
        return reason.strerror or str(reason)
    if isinstance(reason, OSError) and reason.errno in errno.errorcode:
        return errno.errorcode[reason.errno]
    return str(reason) or type(reason).__name__


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_from_response(status: int, body: Any, headers: Mapping[str, str]) -> APIError:
    headers = as_headers(headers)
    fields = body.get("error") if isinstance(body, dict) else None
    # A bare string (TGI's {"error": "…"}, some proxies') is the message; null or anything else says nothing.
    if isinstance(fields, str):
        fields = {"message": fields}
    elif not isinstance(fields, dict):
        fields = {}
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIError)
    return cls(
        fields.get("message") or f"HTTP {status}",
        status=status,
        type=fields.get("type"),
        code=fields.get("code"),
        param=fields.get("param"),
        request_id=headers.get("x-request-id"),
        headers=headers,
    )


#: The statuses of the error catalogue's codes that can end a stream (an upstream_error may also be 503 or 504).
_STATUS_OF_CODE = {
    "rate_limit_exceeded": 429, "token_rate_limit_exceeded": 429, "concurrency_limit_exceeded": 429,
    "monthly_quota_exceeded": 429, "internal_error": 500, "upstream_error": 502, "overloaded": 503,
    "dependency_unavailable": 503,
}
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "rate_limit_error": 429,
    "server_error": 500,
}


def stream_error_status(fields: Mapping[str, Any]) -> int:
    """The status an error event's error would have had as a response: by its code (overloaded and
    dependency_unavailable 503, the rate limits 429, upstream_error 502, internal_error 500), else by its
    type (invalid_request_error 400, authentication_error 401, permission_error 403, rate_limit_error 429),
    else 500."""
    code, type_ = fields.get("code"), fields.get("type")
    return (_STATUS_OF_CODE.get(code) if isinstance(code, str) else None) or (
        _STATUS_OF_TYPE.get(type_) if isinstance(type_, str) else None) or 500


def error_from_stream_event(event: Any, headers: Mapping[str, str]) -> APIError:
    """The error an error event inside a stream carries, of the class its code implies (the stream's status was 200)."""
    fields = event.get("error") if isinstance(event, dict) else None
    return error_from_response(stream_error_status(fields if isinstance(fields, dict) else {}), event, headers)


# Tracebacks name the public path (alveare.RateLimitError), not the private module.
for _cls in (
    AlveareError, APIError, BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
    ConflictError, RequestTooLargeError, UnprocessableEntityError, RateLimitError, InternalServerError,
    APIConnectionError, APITimeoutError, MissingApiKeyError, MalformedApiKeyError, InvalidBaseURLError,
):
    _cls.__module__ = "alveare"
