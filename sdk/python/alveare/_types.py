"""Request and response shapes of the Alveare API (mirroring sdk/typescript/src/types.ts)."""
from __future__ import annotations

import sys
from typing import Dict, List, Optional, Union

if sys.version_info >= (3, 11):
    from typing import Literal, NotRequired, TypedDict
else:  # pragma: no cover - Python 3.9 and 3.10
    from typing import Literal, TypedDict

    try:
        from typing_extensions import NotRequired
    except ImportError:  # the standard library only: fall back to plain annotations
        NotRequired = Optional  # type: ignore[assignment,misc]

ChatRole = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


class ChatContentPart(TypedDict):
    type: Literal["text"]
    text: str


class ChatMessage(TypedDict):
    role: ChatRole
    content: Union[str, List[ChatContentPart]]


class InferResponse(TypedDict):
    id: str
    specialist: str
    result: str
    tokens_used: int
    latency_ms: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str


class Choice(TypedDict):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: List[Choice]
    usage: CompletionUsage


class ChunkDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str


class ChunkChoice(TypedDict):
    index: int
    delta: ChunkDelta
    finish_reason: Optional[FinishReason]


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: List[ChunkChoice]
    usage: NotRequired[Optional[CompletionUsage]]


class Model(TypedDict):
    id: str
    object: Literal["model"]
    owned_by: Literal["alveare"]


class ModelList(TypedDict):
    object: Literal["list"]
    data: List[Model]


class Usage(TypedDict):
    period_start: str
    period_end: str
    requests_used: int
    requests_limit: int
    tokens_used: int
    by_specialist: Dict[str, int]


class Health(TypedDict):
    status: Literal["ok"]
    version: str
    uptime_seconds: int
