"""HTTP header fields, looked up whatever the case of their names."""
from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping


class Headers(Mapping[str, str]):
    """A read-only mapping of header fields in which `X-Request-Id` and `x-request-id` are the same key.

    Names are kept lower-cased (what iteration and `dict(headers)` give); a field sent more than once
    holds its values joined with ", ", as HTTP reads them.
    """

    def __init__(self, fields: Any = None) -> None:
        self._fields: Dict[str, str] = {}
        pairs = fields.items() if hasattr(fields, "items") else (fields or ())
        for name, value in pairs:
            key = str(name).lower()
            self._fields[key] = f"{self._fields[key]}, {value}" if key in self._fields else str(value)

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def as_headers(fields: Any) -> Mapping[str, str]:
    """`fields` as a case-insensitive mapping (itself when it already is one)."""
    return fields if isinstance(fields, Headers) else Headers(fields)
