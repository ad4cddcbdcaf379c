"""Official Python client for the Alveare API (standard library only)."""
from ._client import Alveare, ChatCompletionStream
from ._errors import (
    AlveareError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UnprocessableEntityError,
)
from ._retry import retry_delay, server_delay, should_retry

__all__ = [
    "Alveare", "ChatCompletionStream", "AlveareError", "APIError", "APIConnectionError", "APITimeoutError",
    "AuthenticationError", "BadRequestError", "ConflictError", "InternalServerError", "NotFoundError",
    "PermissionDeniedError", "RateLimitError", "RequestTooLargeError", "UnprocessableEntityError",
    "retry_delay", "server_delay", "should_retry",
]
__version__ = "0.1.0"
