"""Official Python client for the Alveare API (standard library only)."""
from ._client import DEFAULT_BASE_URL, Alveare, ChatCompletionStream, RetryEvent, normalize_base_url
from ._errors import (
    AlveareError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidBaseURLError,
    MissingApiKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UnprocessableEntityError,
)
from ._version import __version__
from ._retry import retry_delay, server_delay, server_delay_ms, should_retry
from ._types import (
    ApiObject,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    ChunkFunctionCall,
    ChunkToolCall,
    CompletionUsage,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
    FunctionCall,
    Health,
    InferResponse,
    Model,
    ModelList,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
)

__all__ = [
    "Alveare", "ChatCompletionStream", "RetryEvent", "DEFAULT_BASE_URL", "normalize_base_url",
    "AlveareError", "APIError", "APIConnectionError", "APITimeoutError", "AuthenticationError", "MissingApiKeyError",
    "InvalidBaseURLError",
    "BadRequestError", "ConflictError", "InternalServerError", "NotFoundError", "PermissionDeniedError",
    "RateLimitError", "RequestTooLargeError", "UnprocessableEntityError",
    "ApiObject", "AssistantMessage", "ChatCompletion", "ChatCompletionChunk", "Choice", "ChunkChoice", "ChunkDelta",
    "CompletionUsage", "Health", "InferResponse", "Model", "ModelList", "Usage",
    "ChunkFunctionCall", "ChunkToolCall", "CreateEmbeddingResponse", "Embedding", "EmbeddingUsage", "FunctionCall", "ToolCall",
    "ChoiceLogprobs", "TokenLogprob", "TopLogprob",
    "retry_delay", "server_delay", "server_delay_ms", "should_retry",
]
