"""The retry policy, pure so it can be tested with an injected clock."""
from __future__ import annotations

import math
import random as _random
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, Optional

from ._headers import as_headers

INITIAL_DELAY = 0.5
MAX_BACKOFF = 8.0
#: A server-requested wait longer than this (seconds) is not waited out (nor retried sooner): the error is surfaced.
MAX_SERVER_DELAY = 60.0


def should_retry(status: int, headers: Mapping[str, str], code: Optional[str]) -> bool:
    """Whether a status (with the server's hints; header names in any case) is worth another attempt."""
    hint = as_headers(headers).get("x-should-retry")
    if hint == "false":
        return False
    if hint == "true":
        return True
    if status == 429:
        return code != "monthly_quota_exceeded"
    return status in (408, 409) or status >= 500


def server_delay_ms(headers: Optional[Mapping[str, str]], now: float) -> Optional[float]:
    """The server's requested wait in ms: retry-after-ms, then Retry-After (seconds or HTTP date)."""
    if not headers:
        return None
    headers = as_headers(headers)
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value_ms = float(ms)
        except ValueError:
            value_ms = -1.0
        # A negative, infinite or NaN value is not a wait: Retry-After decides, as in the TypeScript SDK.
        if math.isfinite(value_ms) and value_ms >= 0:
            return value_ms
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value) * 1000)
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value).timestamp() - now) * 1000)
    except (TypeError, ValueError):
        return None


def server_delay(headers: Optional[Mapping[str, str]], now: float) -> Optional[float]:
    """The server's requested wait in seconds (see server_delay_ms)."""
    ms = server_delay_ms(headers, now)
    return None if ms is None else ms / 1000


def retry_delay(attempt: int, headers: Optional[Mapping[str, str]], now: float, random: Callable[[], float] = _random.random) -> Optional[float]:
    """Seconds to wait before retry number `attempt + 1`, or None for no retry.

    The server's wait when it is at most MAX_SERVER_DELAY seconds; a longer one gives None: the error is
    surfaced at once rather than waited out or retried early. Without one, 0.5 s doubling to 8 s, minus up
    to 25% jitter."""
    delay = server_delay(headers, now)
    if delay is not None:
        return delay if delay <= MAX_SERVER_DELAY else None
    return min(INITIAL_DELAY * 2 ** attempt, MAX_BACKOFF) * (1 - 0.25 * random())
