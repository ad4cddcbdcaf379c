"""Request and response shapes of the Alveare API (mirroring sdk/typescript/src/types.ts).

Requests are plain dicts typed by TypedDicts. Responses are frozen dataclasses with attribute
access (`result.tokens_used`); they also answer `result["tokens_used"]`, `.get()`, `in` and
`to_dict()`, so code written against the earlier plain-dict responses keeps working.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Type, TypedDict, TypeVar, Union

ChatRole = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


class ChatContentPart(TypedDict):
    type: Literal["text"]
    text: str


class ChatMessage(TypedDict):
    role: ChatRole
    content: Union[str, List[ChatContentPart]]


class StreamOptions(TypedDict, total=False):
    include_usage: bool


#: {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}.
ResponseFormat = Dict[str, Any]


_T = TypeVar("_T", bound="ApiObject")


class ApiObject:
    """Base of every response object: attribute access first, dict-style reads for compatibility.

    A field the server left out (or sent as null) reads as None, and counts as absent for
    `in`, `get()` and `keys()`, as it would in the JSON.
    """

    def __getitem__(self, key: str) -> Any:
        if key in self:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def keys(self) -> List[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> Dict[str, Any]:
        """The object as the JSON the server sent (absent fields left out)."""
        return {k: _to_plain(getattr(self, k)) for k in self.keys()}

    @classmethod
    def from_dict(cls: Type[_T], data: Mapping[str, Any]) -> _T:
        """Builds the object from a response body; fields newer than this SDK are ignored."""
        hints = typing.get_type_hints(cls)
        values = {f.name: _convert(hints[f.name], data.get(f.name)) for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        return cls(**values)


def _to_plain(value: Any) -> Any:
    if isinstance(value, ApiObject):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


def _convert(hint: Any, value: Any) -> Any:
    """Turns a JSON value into the annotated type: nested objects, lists of them, Optional of either."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin in (list, List) and isinstance(value, list):
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if isinstance(hint, type) and issubclass(hint, ApiObject) and isinstance(value, Mapping):
        return hint.from_dict(value)
    return value


@dataclasses.dataclass(frozen=True)
class InferResponse(ApiObject):
    id: str
    specialist: str
    result: str
    tokens_used: int
    latency_ms: int


@dataclasses.dataclass(frozen=True)
class CompletionUsage(ApiObject):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclasses.dataclass(frozen=True)
class AssistantMessage(ApiObject):
    role: str
    content: str


@dataclasses.dataclass(frozen=True)
class Choice(ApiObject):
    index: int
    message: AssistantMessage
    finish_reason: str


@dataclasses.dataclass(frozen=True)
class ChatCompletion(ApiObject):
    id: str
    object: str
    created: int
    model: str
    choices: List[Choice]
    usage: CompletionUsage


@dataclasses.dataclass(frozen=True)
class ChunkDelta(ApiObject):
    role: Optional[str] = None
    content: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ChunkChoice(ApiObject):
    index: int
    delta: ChunkDelta
    finish_reason: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ChatCompletionChunk(ApiObject):
    id: str
    object: str
    created: int
    model: str
    choices: List[ChunkChoice]
    usage: Optional[CompletionUsage] = None


@dataclasses.dataclass(frozen=True)
class Model(ApiObject):
    id: str
    object: str
    owned_by: str


@dataclasses.dataclass(frozen=True)
class ModelList(ApiObject):
    object: str
    data: List[Model]


@dataclasses.dataclass(frozen=True)
class Usage(ApiObject):
    period_start: str
    period_end: str
    requests_used: int
    requests_limit: int
    tokens_used: int
    by_specialist: Dict[str, int]


@dataclasses.dataclass(frozen=True)
class Health(ApiObject):
    status: str
    version: str
    uptime_seconds: int
