"""One retry policy for every hub client: bounded attempts, exponential backoff with jitter,
and the hub's ``Retry-After`` honoured (capped), so no crawl can hang or hammer a host.

A client's attempt raises :class:`Transient` for what is worth trying again (a 429 or 5xx, a
dropped connection, a truncated body, a wrong Content-Length); anything else propagates at once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from consentry.hubs.base import HubError

T = TypeVar("T")
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Transient(Exception):
    """A failure worth another attempt, after ``retry_after`` seconds when the hub said so."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    """``retries`` further attempts after the first; waits ``backoff·2ⁿ`` (capped at
    ``max_backoff``, plus up to ``jitter`` of it) or the hub's Retry-After (capped at
    ``max_retry_after``). ``retried`` counts the retries made, for crawl reports."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    retried: int = 0

    def call(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it returns, raises something other than :class:`Transient`, or
        the attempts run out (then :class:`HubError` naming ``what`` and the last problem)."""
        for n in range(self.retries + 1):
            try:
                return attempt()
            except Transient as exc:
                if n == self.retries:
                    raise HubError(f"{what}: gave up after {n + 1} attempts ({exc.problem})") from None
                self.retried += 1
                self.sleep(self.delay(n, exc.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        wait = min(self.max_backoff, self.backoff * 2**attempt)
        return wait * random.uniform(1.0, 1.0 + self.jitter)


# transport errors that another attempt cannot cure: the URL itself is wrong (httpx and httpx2)
_PERMANENT_TRANSPORT = frozenset({"UnsupportedProtocol", "InvalidURL", "LocalProtocolError"})


def transport_failure(what: str, exc: Exception) -> Exception:
    """What to raise for a transport error: :class:`Transient` for a dropped, truncated or timed
    out exchange, a :class:`HubError` at once for a URL no retry can fix (``ftp://``, bad host)."""
    problem = f"{type(exc).__name__}: {exc}"
    if type(exc).__name__ in _PERMANENT_TRANSPORT:
        return HubError(f"{what}: {problem}")
    return Transient(problem)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
