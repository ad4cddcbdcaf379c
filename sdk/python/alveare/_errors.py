"""One exception class per status, carrying the server's error fields and the request id."""
from __future__ import annotations

from typing import Any, Mapping, Optional


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
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class BadRequestError(APIError): ...
class AuthenticationError(APIError): ...
class PermissionDeniedError(APIError): ...
class NotFoundError(APIError): ...
class ConflictError(APIError): ...
class RequestTooLargeError(APIError): ...
class UnprocessableEntityError(APIError): ...
class RateLimitError(APIError): ...
class InternalServerError(APIError): ...


class APIConnectionError(APIError):
    """The request got no HTTP answer (refused, reset, DNS)."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


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
    fields = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(fields, dict):
        fields = {"message": str(fields)}
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
