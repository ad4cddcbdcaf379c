"""HTTP header fields, looked up whatever the case of their names."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple, Union


class Headers(Dict[str, str]):
    """A dict of header fields in which `X-Request-Id` and `x-request-id` are the same key.

    Names are stored lower-cased (what iteration, `dict(headers)`, `json.dumps(headers)` and `copy()`
    give); reading (`[]`, `get`, `in`) and writing (`[]=`, `update`, `setdefault`, `pop`, `del`) accept
    any case. A field sent more than once holds its values joined with ", ", as HTTP reads them.
    A dict subclass, so code written for the plain dict earlier versions gave keeps working.
    """

    def __init__(self, fields: Any = None) -> None:
        super().__init__()
        for name, value in _pairs(fields):
            key = str(name).lower()
            dict.__setitem__(self, key, f"{dict.__getitem__(self, key)}, {value}" if dict.__contains__(self, key) else str(value))

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return self[name] if name in self else default

    def __setitem__(self, name: str, value: str) -> None:
        dict.__setitem__(self, str(name).lower(), value)

    def __delitem__(self, name: str) -> None:
        dict.__delitem__(self, name.lower() if isinstance(name, str) else name)

    def pop(self, name: str, *default: Any) -> Any:  # type: ignore[override]
        return dict.pop(self, name.lower() if isinstance(name, str) else name, *default)

    def setdefault(self, name: str, default: str = "") -> str:  # type: ignore[override]
        return dict.setdefault(self, str(name).lower(), default)

    def update(self, fields: Any = (), **more: str) -> None:  # type: ignore[override]
        for name, value in [*_pairs(fields), *more.items()]:
            self[name] = value

    def copy(self) -> "Headers":
        return Headers(self)

    def __repr__(self) -> str:
        return f"Headers({dict.__repr__(self)})"


def _pairs(fields: Any) -> Iterable[Tuple[Any, Any]]:
    if fields is None:
        return ()
    return fields.items() if hasattr(fields, "items") else fields  # type: ignore[no-any-return]


def as_headers(fields: Union[Headers, Any]) -> Headers:
    """`fields` as a case-insensitive dict (itself when it already is one)."""
    return fields if isinstance(fields, Headers) else Headers(fields)
