"""Request and response shapes of the Alveare API (mirroring sdk/typescript/src/types.ts).

Requests are plain dicts typed by TypedDicts. Responses are frozen dataclasses with attribute
access (`result.tokens_used`); they also answer `result["tokens_used"]`, `.get()`, `in` and
`to_dict()`, so code written against the earlier plain-dict responses keeps working.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple, Type, TypedDict, TypeVar, Union

#: "developer" (OpenAI's newer name for the system role) is read as a system message.
ChatRole = Literal["system", "developer", "user", "assistant", "tool"]
#: "content_filter": a remote specialist's upstream filtered the answer.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class ChatContentPart(TypedDict):
    type: Literal["text"]
    text: str


class ChatContentRefusalPart(TypedDict):
    """An assistant's refusal, replayed from an earlier answer: only assistant messages may carry one (else 400)."""
    type: Literal["refusal"]
    refusal: str


class _ChatMessageRequired(TypedDict):
    role: ChatRole
    #: A non-empty list of parts, or a string. May be None only on an assistant message that carries tool_calls or a
    #: refusal; refusal parts only on an assistant message.
    content: Union[str, List[Union[ChatContentPart, ChatContentRefusalPart]], None]


class ChatMessage(_ChatMessageRequired, total=False):
    #: Accepted for OpenAI compatibility and ignored: the model never sees participant names (the server checks each is a string).
    name: str
    #: An assistant message's refusal, replayed from an earlier answer (content then None); read as its text.
    refusal: Optional[str]
    #: An assistant message's tool calls, replayed from an earlier answer ({"id", "type": "function", "function": {"name", "arguments"}}).
    tool_calls: Optional[List[Dict[str, Any]]]
    #: A tool message: the id of the call it answers.
    tool_call_id: Optional[str]


#: {"type": "function", "function": {"name": ..., "description": ..., "parameters": {JSON Schema of type "object"}, "strict": ...}}.
ChatCompletionTool = Dict[str, Any]
#: "none", "auto", "required", {"type": "function", "function": {"name": ...}} or
#: {"type": "allowed_tools", "allowed_tools": {"mode": "auto" or "required", "tools": [{"type": "function", "function": {"name": ...}}, ...]}}.
ToolChoice = Union[Literal["none", "auto", "required"], Dict[str, Any]]
#: Only text is generated: ["text"]; "audio" is refused (400).
Modality = Literal["text"]


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

    #: The server's id for the exchange that gave this answer (its x-request-id), as the OpenAI SDKs give it:
    #: log it, or quote it when asking about a request. Not a field (not in to_dict(), ==, or repr); None on
    #: the objects nested in an answer.
    _request_id: Optional[str] = None

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

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The object as JSON text, as the openai package's `to_json()`: `json.dumps` takes `to_dict()`, not the
        object itself (it was a plain dict in earlier versions)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls: Type[_T], data: Mapping[str, Any]) -> _T:
        """Builds the object from a response body; fields newer than this SDK are ignored."""
        values = {name: _convert(hint, data.get(name)) for name, hint in _fields_of(cls)}
        return cls(**values)


_FIELDS: Dict[type, List[Tuple[str, Any]]] = {}


def _fields_of(cls: type) -> List[Tuple[str, Any]]:
    """(name, type) of each field a response class is built from. Resolved once per class: get_type_hints
    evaluates every annotation again on each call (about 0.7 ms per stream chunk, more than reading it)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls)
        fields = [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        _FIELDS[cls] = fields
    return fields


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
    #: Label specialists (classify): every label's probability; they sum to 1.
    scores: Optional[Dict[str, float]] = None
    #: With scores: the answered label's score.
    confidence: Optional[float] = None
    #: Only when the answer did not simply end: "length" (max_tokens cut it) or "content_filter" (a remote upstream's filter cut it).
    finish_reason: Optional[str] = None
    #: A remote upstream's refusal (OpenAI's structured outputs), in place of a result.
    refusal: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TopLogprob(ApiObject):
    token: str
    #: The model's own log-probability (log-softmax of its logits, before temperature, top-p and grammar).
    logprob: float
    bytes: Optional[List[int]] = None


@dataclasses.dataclass(frozen=True)
class TokenLogprob(ApiObject):
    token: str
    logprob: float
    bytes: Optional[List[int]] = None
    top_logprobs: Optional[List[TopLogprob]] = None


@dataclasses.dataclass(frozen=True)
class ChoiceLogprobs(ApiObject):
    content: Optional[List[TokenLogprob]] = None
    refusal: Optional[List[TokenLogprob]] = None


@dataclasses.dataclass(frozen=True)
class PromptTokensDetails(ApiObject):
    #: Prompt tokens the server's cache served instead of evaluating them.
    cached_tokens: int


@dataclasses.dataclass(frozen=True)
class CompletionUsage(ApiObject):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    #: Present where the server knows how much of the prompt came from its cache.
    prompt_tokens_details: Optional[PromptTokensDetails] = None


@dataclasses.dataclass(frozen=True)
class FunctionCall(ApiObject):
    name: str
    #: JSON text; on a "length" finish the last call's may be cut short.
    arguments: str


@dataclasses.dataclass(frozen=True)
class ToolCall(ApiObject):
    id: str
    type: str
    function: FunctionCall


@dataclasses.dataclass(frozen=True)
class AssistantMessage(ApiObject):
    role: str
    #: None when the answer is tool calls.
    content: Optional[str] = None
    tool_calls: Optional[List[ToolCall]] = None
    #: A remote upstream's refusal (OpenAI's structured outputs), content then None; otherwise None.
    refusal: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Choice(ApiObject):
    index: int
    message: AssistantMessage
    finish_reason: str
    #: None unless logprobs=True was asked.
    logprobs: Optional[ChoiceLogprobs] = None


@dataclasses.dataclass(frozen=True)
class ChatCompletion(ApiObject):
    id: str
    object: str
    created: int
    model: str
    choices: List[Choice]
    usage: CompletionUsage


@dataclasses.dataclass(frozen=True)
class ChunkFunctionCall(ApiObject):
    name: Optional[str] = None
    arguments: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ChunkToolCall(ApiObject):
    """A piece of a streamed tool call: the first carries id, type and name, later ones more arguments."""
    index: int
    function: ChunkFunctionCall
    id: Optional[str] = None
    type: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ChunkDelta(ApiObject):
    role: Optional[str] = None
    content: Optional[str] = None
    #: A piece of a remote upstream's refusal.
    refusal: Optional[str] = None
    tool_calls: Optional[List[ChunkToolCall]] = None


@dataclasses.dataclass(frozen=True)
class ChunkChoice(ApiObject):
    index: int
    delta: ChunkDelta
    finish_reason: Optional[str] = None
    #: This chunk's tokens' log-probabilities, when asked.
    logprobs: Optional[ChoiceLogprobs] = None


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
    #: Unix seconds.
    created: Optional[int] = None


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


@dataclasses.dataclass(frozen=True)
class Embedding(ApiObject):
    object: str
    index: int
    #: A list of floats, or a base64 string (little-endian float32) for encoding_format="base64".
    embedding: Union[List[float], str]


@dataclasses.dataclass(frozen=True)
class EmbeddingUsage(ApiObject):
    prompt_tokens: int
    total_tokens: int


@dataclasses.dataclass(frozen=True)
class CreateEmbeddingResponse(ApiObject):
    object: str
    data: List[Embedding]
    model: str
    usage: EmbeddingUsage
